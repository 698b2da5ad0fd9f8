use std::path::Path;

use super::*;

fn standalone(dir: &Path, shards: u32) -> Bank {
    Bank::new(
        dir.to_path_buf(),
        "p-0".into(),
        Mode::Standalone { shards },
        None,
    )
}

fn at(shard: u32, epoch: u64) -> Route {
    Route {
        shard: Some(shard),
        epoch: Some(epoch),
    }
}

fn applied(balance: u64) -> Outcome {
    Outcome::Applied { balance }
}

#[tokio::test]
async fn op_ids_keep_their_answer_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let r = Route::default();
    {
        let bank = standalone(dir.path(), 4);
        bank.acquire_all().await.unwrap();
        assert_eq!(
            bank.deposit(r, "alice", "d1", 500).await.unwrap(),
            applied(500)
        );
        assert_eq!(
            bank.withdraw(r, "alice", "w1", 200).await.unwrap(),
            applied(300)
        );
        let no = bank.withdraw(r, "alice", "w2", 1000).await.unwrap();
        assert_eq!(
            no,
            Outcome::Rejected {
                error: "insufficient-funds".into()
            }
        );
        for id in bank.held() {
            bank.release(id, 0).await.unwrap();
        }
    }
    let bank = standalone(dir.path(), 4);
    bank.acquire_all().await.unwrap();
    assert_eq!(bank.balance(r, "alice").await.unwrap(), 300);
    // Re-sent ops get their first answers and change nothing.
    assert_eq!(
        bank.deposit(r, "alice", "d1", 500).await.unwrap(),
        applied(500)
    );
    assert_eq!(
        bank.withdraw(r, "alice", "w1", 200).await.unwrap(),
        applied(300)
    );
    assert_eq!(
        bank.withdraw(r, "alice", "w2", 1).await.unwrap(),
        Outcome::Rejected {
            error: "insufficient-funds".into()
        }
    );
    assert_eq!(bank.balance(r, "alice").await.unwrap(), 300);
    assert_eq!(bank.balance(r, "nobody").await.unwrap(), 0);
}

#[tokio::test]
async fn writes_are_fenced_by_shard_and_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::new(dir.path().to_path_buf(), "p-0".into(), Mode::Mesh, None);
    assert_eq!(
        bank.deposit(at(3, 5), "a", "x", 1).await,
        Err(BankError::NotOwned(3))
    );
    bank.acquire(3, 5).await.unwrap();
    let stale = bank.deposit(at(3, 4), "a", "x", 1).await;
    assert!(matches!(
        stale,
        Err(BankError::StaleEpoch {
            shard: 3,
            held: 5,
            got: 4
        })
    ));
    assert_eq!(
        bank.balance(at(3, 5), "a").await.unwrap(),
        0,
        "the stale write changed nothing"
    );
    assert_eq!(
        bank.deposit(at(3, 5), "a", "x", 7).await.unwrap(),
        applied(7)
    );
    // A newer epoch on a request (the sidecar moved on without re-acquiring) is served.
    assert_eq!(
        bank.deposit(at(3, 6), "a", "y", 1).await.unwrap(),
        applied(8)
    );
    let missing = bank.deposit(Route::default(), "a", "z", 1).await;
    assert!(matches!(missing, Err(BankError::BadRequest(_))));
    // The same epoch again is an idempotent retry; a release at an older epoch is refused.
    bank.acquire(3, 5).await.unwrap();
    assert!(matches!(
        bank.release(3, 4).await,
        Err(BankError::StaleEpoch { .. })
    ));
    bank.release(3, 5).await.unwrap();
    bank.release(3, 5).await.unwrap();
    assert_eq!(
        bank.deposit(at(3, 5), "a", "w", 1).await,
        Err(BankError::NotOwned(3))
    );

    // Handoff: another pod over the same directory takes the shard with its history.
    let other = Bank::new(dir.path().to_path_buf(), "p-1".into(), Mode::Mesh, None);
    other.acquire(3, 9).await.unwrap();
    assert_eq!(other.balance(at(3, 9), "a").await.unwrap(), 8);
    assert_eq!(
        other.deposit(at(3, 9), "a", "x", 7).await.unwrap(),
        applied(7)
    );
    assert_eq!(other.balance(at(3, 9), "a").await.unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_fsyncs_and_all_survive_reload() {
    let dir = tempfile::tempdir().unwrap();
    let bank = std::sync::Arc::new(standalone(dir.path(), 1));
    bank.acquire_all().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let bank = std::sync::Arc::clone(&bank);
        tasks.push(tokio::spawn(async move {
            bank.deposit(Route::default(), "acct", &format!("op-{i}"), i + 1)
                .await
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(Outcome::Applied { .. })));
    }
    let total: u64 = (1..=200).sum();
    assert_eq!(bank.balance(Route::default(), "acct").await.unwrap(), total);
    bank.release(0, 0).await.unwrap();
    let again = standalone(dir.path(), 1);
    again.acquire_all().await.unwrap();
    assert_eq!(
        again.balance(Route::default(), "acct").await.unwrap(),
        total
    );
}

#[tokio::test]
async fn the_lose_deposit_fault_acks_without_applying() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::new(
        dir.path().to_path_buf(),
        "p-0".into(),
        Mode::Standalone { shards: 2 },
        Some(Fault::LoseEveryNthDeposit(2)),
    );
    bank.acquire_all().await.unwrap();
    let r = Route::default();
    assert_eq!(bank.deposit(r, "a", "1", 10).await.unwrap(), applied(10));
    assert_eq!(bank.deposit(r, "a", "2", 10).await.unwrap(), applied(20));
    assert_eq!(
        bank.balance(r, "a").await.unwrap(),
        10,
        "the second deposit was lost"
    );
}

#[tokio::test]
async fn a_failed_log_stops_the_shard_until_it_is_reacquired() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::new(dir.path().to_path_buf(), "p-0".into(), Mode::Mesh, None);
    bank.acquire(1, 2).await.unwrap();
    assert_eq!(
        bank.deposit(at(1, 2), "a", "x", 5).await.unwrap(),
        applied(5)
    );
    bank.get(1).unwrap().poison();
    assert_eq!(
        bank.deposit(at(1, 2), "a", "y", 5).await,
        Err(BankError::Unavailable(1))
    );
    // The sidecar re-acquires: the state is reloaded from the log.
    bank.acquire(1, 2).await.unwrap();
    assert_eq!(bank.balance(at(1, 2), "a").await.unwrap(), 5);
    assert_eq!(
        bank.deposit(at(1, 2), "a", "y", 5).await.unwrap(),
        applied(10)
    );
}

/// Pods `a` and `b` sharing `dir`; `a` holds shard 0 at epoch 1 and
/// deposited 10 on account `x` (op "1").
async fn a_holds_x_at_10(dir: &Path) -> (Bank, Bank) {
    let a = Bank::new(dir.to_path_buf(), "a".into(), Mode::Mesh, None);
    let b = Bank::new(dir.to_path_buf(), "b".into(), Mode::Mesh, None);
    a.acquire(0, 1).await.unwrap();
    a.deposit(at(0, 1), "x", "1", 10).await.unwrap();
    (a, b)
}

#[tokio::test]
async fn acquire_at_another_epoch_reloads_what_other_owners_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = a_holds_x_at_10(dir.path()).await;
    // `a` misses its release; `b` owns the shard for a while and writes.
    b.acquire(0, 2).await.unwrap();
    b.deposit(at(0, 2), "x", "2", 5).await.unwrap();
    b.release(0, 2).await.unwrap();
    a.acquire(0, 3).await.unwrap();
    assert_eq!(a.balance(at(0, 3), "x").await.unwrap(), 15);
    assert_eq!(
        a.deposit(at(0, 3), "x", "2", 5).await.unwrap(),
        applied(15),
        "b's op keeps its answer"
    );
    // A restarted sidecar may start over at a lower epoch: its acquire still wins and re-fences.
    a.acquire(0, 1).await.unwrap();
    assert_eq!(a.balance(at(0, 1), "x").await.unwrap(), 15);
    assert!(matches!(
        a.balance(at(0, 0), "x").await,
        Err(BankError::StaleEpoch { .. })
    ));
}

#[tokio::test]
async fn a_write_after_a_takeover_is_refused_not_acknowledged_and_lost() {
    // Two pods both believe they own shard 0 (a split brain above the app):
    // `b`'s acquire marker voids every later line of `a`, so `a` must not
    // acknowledge one.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = a_holds_x_at_10(dir.path()).await;
    b.acquire(0, 2).await.unwrap();
    assert!(matches!(
        a.deposit(at(0, 1), "x", "2", 7).await,
        Err(BankError::NotOwned(0))
    ));
    assert!(
        matches!(a.balance(at(0, 1), "x").await, Err(BankError::NotOwned(0))),
        "the superseded term serves nothing more"
    );
    assert_eq!(b.balance(at(0, 2), "x").await.unwrap(), 10);
    assert_eq!(
        b.deposit(at(0, 2), "x", "2", 7).await.unwrap(),
        applied(17),
        "the refused op was never applied"
    );
}

#[tokio::test]
async fn a_read_after_a_takeover_is_refused_not_answered_from_stale_state() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = a_holds_x_at_10(dir.path()).await;
    b.acquire(0, 2).await.unwrap();
    b.deposit(at(0, 2), "x", "2", 7).await.unwrap();
    assert!(
        matches!(a.balance(at(0, 1), "x").await, Err(BankError::NotOwned(0))),
        "a would answer 10, but the balance is 17"
    );
    assert_eq!(b.balance(at(0, 2), "x").await.unwrap(), 17);
}
