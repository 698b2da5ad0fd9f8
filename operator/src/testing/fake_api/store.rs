//! The state of the in-memory API server: objects as JSON, a global
//! resourceVersion counter, and the watchers to notify.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc::UnboundedSender;

/// `(collection, namespace, name)`; a collection is `group/version/plural`
/// (`v1/configmaps`, `apps/v1/statefulsets`).
pub type Key = (String, String, String);

/// A watch in progress.
pub struct Watcher {
    /// The collection watched.
    pub collection: String,
    /// `None` watches every namespace.
    pub namespace: Option<String>,
    /// Equality label selector.
    pub selector: Vec<(String, String)>,
    /// Where the event lines go.
    pub tx: UnboundedSender<Value>,
}

/// Every object and the counters.
#[derive(Default)]
pub struct Store {
    /// The objects.
    pub objects: BTreeMap<Key, Value>,
    /// The last resourceVersion handed out.
    pub version: u64,
    /// Open watches.
    pub watchers: Vec<Watcher>,
    /// Uids handed out so far.
    pub uids: u64,
    /// Recent changes, oldest first, so a watch can resume from a
    /// resourceVersion; older ones are dropped (a resume from before them gets 410 Gone).
    pub history: VecDeque<(u64, Key, Value)>,
}

/// Changes kept for resuming watches.
pub const HISTORY: usize = 4096;

/// Adjusts an object just before it is stored (simulated controllers).
pub type Fixup<'a> = &'a dyn Fn(&str, &mut Value);

impl Store {
    /// Bumps the resourceVersion and stamps it on `obj`.
    fn stamp(&mut self, obj: &mut Value) {
        self.version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.version.to_string());
    }

    /// Stores a new object (the caller checked it is absent) and notifies watchers.
    pub fn create(&mut self, key: Key, mut obj: Value, fixup: Fixup<'_>) -> Value {
        self.uids += 1;
        let meta = &mut obj["metadata"];
        meta["name"] = json!(key.2);
        if !key.1.is_empty() {
            meta["namespace"] = json!(key.1);
        }
        meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", self.uids));
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        fixup(&key.0, &mut obj);
        self.stamp(&mut obj);
        self.objects.insert(key.clone(), obj.clone());
        self.notify(&key, "ADDED", &obj);
        obj
    }

    /// Replaces a stored object with `obj`, bumping generation when the spec
    /// changed; writes nothing (and returns the old object) when nothing changed,
    /// as the real API server does for a no-op apply.
    pub fn update(&mut self, key: Key, mut obj: Value, fixup: Fixup<'_>) -> Value {
        let Some(old) = self.objects.get(&key).cloned() else {
            return self.create(key, obj, fixup);
        };
        if obj.get("spec") != old.get("spec") {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(generation + 1);
        }
        fixup(&key.0, &mut obj);
        let mut same = obj.clone();
        same["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if same == old {
            return old;
        }
        self.stamp(&mut obj);
        self.objects.insert(key.clone(), obj.clone());
        self.notify(&key, "MODIFIED", &obj);
        obj
    }

    /// Removes an object, and (as the garbage collector would) every object
    /// it controls, recursively.
    pub fn delete(&mut self, key: &Key) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.stamp(&mut obj);
        self.notify(key, "DELETED", &obj);
        let uid = obj["metadata"]["uid"].clone();
        let owned: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in owned {
            self.delete(&k);
        }
        Some(obj)
    }

    /// Objects of `collection` in `namespace` (all when `None`) matching `selector`.
    pub fn list(
        &self,
        collection: &str,
        namespace: Option<&str>,
        selector: &[(String, String)],
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((c, ns, _), o)| {
                c == collection && namespace.is_none_or(|n| n == ns) && matches(o, selector)
            })
            .map(|(_, o)| o.clone())
            .collect()
    }

    fn notify(&mut self, key: &Key, kind: &str, obj: &Value) {
        let event = json!({"type": kind, "object": obj});
        self.history
            .push_back((self.version, key.clone(), event.clone()));
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.watchers
            .retain(|w| !w.wants(key, obj) || w.tx.send(event.clone()).is_ok());
    }
}

impl Watcher {
    /// Whether a change of `key` (now `obj`) concerns this watch.
    pub fn wants(&self, key: &Key, obj: &Value) -> bool {
        self.collection == key.0
            && self.namespace.as_ref().is_none_or(|n| *n == key.1)
            && matches(obj, &self.selector)
    }
}

/// Whether `obj`'s labels satisfy an equality selector.
pub fn matches(obj: &Value, selector: &[(String, String)]) -> bool {
    let labels = &obj["metadata"]["labels"];
    selector
        .iter()
        .all(|(k, v)| labels.get(k).and_then(Value::as_str) == Some(v.as_str()))
}

/// Deep-merges `patch` into `base`: objects merge key by key, null deletes,
/// anything else replaces. Close enough to server-side apply for one field manager: fields
/// other writers set survive; lists are replaced whole.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => merge_maps(b, p),
        (b, p) => *b = p.clone(),
    }
}

fn merge_maps(base: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            // JSON merge patch (RFC 7386): null deletes the field.
            base.remove(k);
            continue;
        }
        match base.get_mut(k) {
            Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}
