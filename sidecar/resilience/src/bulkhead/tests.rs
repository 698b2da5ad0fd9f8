use super::*;
use crate::errors::boxed_cause;
use crate::observer::NoopObserver;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

/// A destination whose requests finish only when the test opens `gate`.
fn gated(gate: Arc<Semaphore>) -> impl Service<(), Response = (), Error = BoxError> + Clone {
    tower::service_fn(move |()| {
        let gate = gate.clone();
        async move {
            gate.acquire().await?.forget();
            Ok::<_, BoxError>(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_slow_service_cannot_use_up_another_services_capacity() {
    let registry = Bulkheads::new(Arc::new(NoopObserver));
    let cap = BulkheadSettings { max_pending: 3 };
    let slow_gate = Arc::new(Semaphore::new(0));
    let fast_gate = Arc::new(Semaphore::new(1_000));
    let mut slow = BulkheadLayer::new(registry.get("slow", cap)).layer(gated(slow_gate.clone()));
    let fast = BulkheadLayer::new(registry.get("fast", cap)).layer(gated(fast_gate));

    let pending: Vec<_> = (0..3).map(|_| slow.call(())).collect();
    assert_eq!(registry.get("slow", cap).pending(), 3);

    // The slow service's fourth caller is refused at once...
    let start = Instant::now();
    let err = slow.call(()).await.unwrap_err();
    assert!(boxed_cause::<Overloaded>(&err).is_some(), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    // ...while the other service still has all of its capacity.
    for _ in 0..10 {
        fast.clone().oneshot(()).await.unwrap();
    }
    assert_eq!(registry.get("fast", cap).pending(), 0);

    // Once the slow calls finish, the slow service admits again.
    slow_gate.add_permits(4);
    for f in pending {
        f.await.unwrap();
    }
    assert_eq!(registry.get("slow", cap).pending(), 0);
    slow.ready().await.unwrap().call(()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropped_requests_give_their_place_back() {
    let registry = Bulkheads::new(Arc::new(NoopObserver));
    let b = registry.get("s", BulkheadSettings { max_pending: 1 });
    let mut svc = BulkheadLayer::new(b.clone()).layer(gated(Arc::new(Semaphore::new(0))));
    let first = svc.call(());
    assert!(svc.call(()).await.is_err());
    drop(first);
    assert_eq!(b.pending(), 0);
    let _second = svc.call(());
    assert_eq!(b.pending(), 1);
}

#[test]
fn reload_changes_the_cap_and_keeps_the_count() {
    let registry = Bulkheads::new(Arc::new(NoopObserver));
    let a = registry.get("s", BulkheadSettings { max_pending: 1 });
    let b = registry.get("s", BulkheadSettings { max_pending: 5 });
    assert_eq!(a.max_pending.load(Ordering::SeqCst), 5);
    assert!(Arc::ptr_eq(&a.pending, &b.pending));
    assert_eq!(BulkheadSettings::default().max_pending, 1000);
}
