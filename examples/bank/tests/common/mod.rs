//! Helpers shared by the black-box tests: start `bank`, call it, run `bank-load`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;
use shardmesh_bank::http::client::HttpClient;

/// How long a started app may take to print its address.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running `bank`, killed on drop.
pub struct App {
    child: Child,
    /// `http://127.0.0.1:PORT` of the app.
    pub base: String,
}

impl App {
    pub fn start(data: &Path, extra: &[&str]) -> App {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bank"))
            .args(["--listen", "127.0.0.1:0", "--pod", "test-0", "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bank");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        // Poll the app's first line (with a deadline) for the bound address.
        let line = rx
            .recv_timeout(START_DEADLINE)
            .expect("bank printed its address");
        let addr = line
            .strip_prefix("bank listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        App {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// Crash: SIGKILL, no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn call(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let client = HttpClient::new(Duration::from_secs(5));
    let hdrs: Vec<_> = headers
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.to_string()))
        .collect();
    let reply = client
        .send(method, &format!("{base}{path}"), &hdrs, body.as_ref())
        .await
        .expect("reply");
    (reply.status.as_u16(), reply.json())
}

pub fn bank_load(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bank-load"))
        .args(args)
        .output()
        .expect("run bank-load");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}
