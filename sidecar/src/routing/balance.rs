//! Keyless balancing: power of two choices on in-flight load. It needs no
//! global state beyond per-endpoint counters and avoids the herd effect of
//! "least loaded" when many sidecars pick at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;

use crate::routing::table::{Endpoint, EndpointHealth};

/// In-flight request counters per endpoint, kept across table updates.
#[derive(Clone, Default)]
pub struct LoadTracker {
    counters: Arc<Mutex<HashMap<Arc<str>, Arc<AtomicUsize>>>>,
}

/// Counts one in-flight request until dropped.
pub struct LoadGuard(Arc<AtomicUsize>);

impl LoadTracker {
    /// Current in-flight requests to `peer`.
    pub fn load(&self, peer: &str) -> usize {
        self.counter(peer).load(Ordering::Relaxed)
    }

    /// Starts counting a request to `peer`.
    pub fn start(&self, peer: &Arc<str>) -> LoadGuard {
        let c = self.counter(peer);
        c.fetch_add(1, Ordering::Relaxed);
        LoadGuard(c)
    }

    /// Drops counters of peers that are no longer in any table, so the map
    /// stays bounded by the membership size.
    pub fn retain(&self, live: &dyn Fn(&str) -> bool) {
        if let Ok(mut map) = self.counters.lock() {
            map.retain(|k, v| live(k) || v.load(Ordering::Relaxed) > 0);
        }
    }

    fn counter(&self, peer: &str) -> Arc<AtomicUsize> {
        // A poisoned lock only means another thread panicked mid-insert; the
        // map itself is still consistent, so keep using it.
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(peer) {
            return c.clone();
        }
        let c = Arc::new(AtomicUsize::new(0));
        map.insert(Arc::from(peer), c.clone());
        c
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Picks an endpoint for a keyless request: two random candidates among the
/// healthy ones that `usable` admits (e.g. breaker not open), the less loaded
/// wins. Falls back to suspect endpoints only when no alive one is usable.
pub fn pick<'a, R: Rng + ?Sized>(
    endpoints: &'a [Endpoint],
    loads: &LoadTracker,
    usable: &dyn Fn(&Endpoint) -> bool,
    rng: &mut R,
) -> Option<&'a Endpoint> {
    let alive: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| e.health == EndpointHealth::Alive && usable(e))
        .collect();
    let pool = if alive.is_empty() {
        endpoints.iter().filter(|e| usable(e)).collect()
    } else {
        alive
    };
    match pool.len() {
        0 => None,
        1 => Some(pool[0]),
        n => {
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (ea, eb) = (pool[a], pool[b]);
            if loads.load(&eb.name) < loads.load(&ea.name) {
                Some(eb)
            } else {
                Some(ea)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ep(name: &str, health: EndpointHealth) -> Endpoint {
        Endpoint {
            name: Arc::from(name),
            inbound: Arc::from("127.0.0.1:1"),
            health,
            generation: 0,
        }
    }

    #[test]
    fn prefers_less_loaded_of_two() {
        let eps = [
            ep("a", EndpointHealth::Alive),
            ep("b", EndpointHealth::Alive),
        ];
        let loads = LoadTracker::default();
        let _busy: Vec<_> = (0..5).map(|_| loads.start(&eps[0].name)).collect();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            assert_eq!(&*pick(&eps, &loads, &|_| true, &mut rng).unwrap().name, "b");
        }
    }

    #[test]
    fn avoids_suspects_and_unusable_endpoints() {
        let eps = [
            ep("a", EndpointHealth::Suspect),
            ep("b", EndpointHealth::Alive),
            ep("c", EndpointHealth::Alive),
        ];
        let loads = LoadTracker::default();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let e = pick(&eps, &loads, &|e| &*e.name != "c", &mut rng).unwrap();
            assert_eq!(&*e.name, "b");
        }
        // Only suspects left: better a suspect than nothing.
        let e = pick(&eps, &loads, &|e| &*e.name == "a", &mut rng).unwrap();
        assert_eq!(&*e.name, "a");
        assert!(pick(&eps, &loads, &|_| false, &mut rng).is_none());
    }

    #[test]
    fn spreads_evenly_without_load() {
        let eps: Vec<_> = (0..4)
            .map(|i| ep(&format!("e{i}"), EndpointHealth::Alive))
            .collect();
        let loads = LoadTracker::default();
        let mut rng = StdRng::seed_from_u64(3);
        let mut hits = HashMap::new();
        for _ in 0..4000 {
            *hits
                .entry(
                    pick(&eps, &loads, &|_| true, &mut rng)
                        .unwrap()
                        .name
                        .clone(),
                )
                .or_insert(0) += 1;
        }
        assert!(hits.values().all(|&h| (800..1200).contains(&h)), "{hits:?}");
    }

    #[test]
    fn guard_decrements_on_drop() {
        let loads = LoadTracker::default();
        let name: Arc<str> = Arc::from("x");
        let g = loads.start(&name);
        assert_eq!(loads.load("x"), 1);
        drop(g);
        assert_eq!(loads.load("x"), 0);
    }
}
