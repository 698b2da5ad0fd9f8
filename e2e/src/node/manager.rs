//! The pod watch: every pod bound to this node (`spec.nodeName`) gets one
//! worker task, fed each new version of the object; a pod that leaves the
//! API (or a relist) tells its worker it is gone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::pod::{self, tracing_log, Msg};
use super::Agent;

struct Worker {
    tx: watch::Sender<Msg>,
    task: JoinHandle<()>,
}

/// Runs pods until `shutdown` turns true, then waits for every worker to
/// stop its pods.
pub async fn run(agent: Arc<Agent>, mut shutdown: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let selector = format!("spec.nodeName={}", agent.cfg.node_name);
    let mut events = watcher::watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut listed: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = shutdown.changed() => None,
        };
        let Some(event) = event else { break };
        workers.retain(|uid, w| {
            if w.task.is_finished() {
                finished.insert(uid.clone());
                false
            } else {
                true
            }
        });
        match event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(p)) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    listed.insert(uid);
                }
                apply(&agent, &shutdown, &mut workers, &finished, p);
            }
            Ok(Event::InitDone) => {
                for (uid, w) in &workers {
                    if !listed.contains(uid) {
                        w.tx.send_replace(Msg::Gone);
                    }
                }
            }
            Ok(Event::Apply(p)) => apply(&agent, &shutdown, &mut workers, &finished, p),
            Ok(Event::Delete(p)) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                if let Some(w) = workers.get(&uid) {
                    w.tx.send_replace(Msg::Gone);
                }
                finished.remove(&uid);
            }
            Err(e) => tracing_log(&format!("pod watch: {e}")),
        }
    }
    for (_, w) in workers {
        let _ = w.task.await;
    }
}

fn apply(
    agent: &Arc<Agent>,
    shutdown: &watch::Receiver<bool>,
    workers: &mut HashMap<String, Worker>,
    finished: &HashSet<String>,
    p: Pod,
) {
    let Some(uid) = p.metadata.uid.clone() else {
        return;
    };
    if let Some(w) = workers.get(&uid) {
        w.tx.send_replace(Msg::Update(Box::new(p)));
        return;
    }
    if finished.contains(&uid) {
        return;
    }
    let (tx, rx) = watch::channel(Msg::Update(Box::new(p.clone())));
    let task = tokio::spawn(pod::run(agent.clone(), p, rx, shutdown.clone()));
    workers.insert(uid, Worker { tx, task });
}
