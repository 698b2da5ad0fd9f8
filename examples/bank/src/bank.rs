//! The bank: which shards this pod holds, at which epoch, and the operations on them.
//!
//! In mesh mode the sidecar tells the app which shard a request belongs to
//! (`x-shardmesh-shard`) and at which ownership epoch (`x-shardmesh-epoch`);
//! requests for a shard not held get `shard-not-owned`, requests with an
//! older epoch than the one acquired get `stale-epoch`, and neither changes
//! anything. In standalone mode the app holds every shard itself and computes
//! the shard of a key like the mesh does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::event::Outcome;
use crate::ledger::Command;
use crate::shard::{Shard, ShardError};
use crate::shard_key::shard_of;

/// How the app learns the shard of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Behind a sidecar: shard and epoch come with each request; shards come via acquire/release.
    Mesh,
    /// Alone: the app holds all `shards` shards and hashes keys itself.
    Standalone {
        /// Number of shards.
        shards: u32,
    },
}

/// Shard and epoch the sidecar stamped on a request (absent without a sidecar).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route {
    /// `x-shardmesh-shard`.
    pub shard: Option<u32>,
    /// `x-shardmesh-epoch`.
    pub epoch: Option<u64>,
}

/// Deliberate bugs for proving that the verification tool catches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Acknowledge every n-th new deposit without applying or logging it.
    LoseEveryNthDeposit(u64),
}

/// Why the bank refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankError {
    /// Malformed request (400 `bad-request`).
    BadRequest(String),
    /// This pod does not hold the shard (503 `shard-not-owned`).
    NotOwned(u32),
    /// The request's epoch is older than the held one (409 `stale-epoch`).
    StaleEpoch {
        /// Shard id.
        shard: u32,
        /// Epoch held by this pod.
        held: u64,
        /// Epoch the request carried.
        got: u64,
    },
    /// The shard's log failed; outcome unknown (503 `shard-unavailable`).
    Unavailable(u32),
    /// Loading the log failed or a bug was hit (500 `internal`).
    Internal(String),
}

/// Everything the app's HTTP handlers need.
#[derive(Debug)]
pub struct Bank {
    /// Directory holding the shard logs (shared by all replicas for handoff).
    dir: PathBuf,
    /// Pod name, part of every owner term token.
    pod: String,
    /// Mesh or standalone.
    mode: Mode,
    /// Shards held now.
    shards: RwLock<HashMap<u32, Arc<Shard>>>,
    /// Serializes acquire/release so two callbacks for one shard cannot interleave.
    callbacks: tokio::sync::Mutex<()>,
    /// Injected fault, if any.
    fault: Option<Fault>,
    /// Counts new deposits, for the fault.
    deposits: AtomicU64,
    /// Makes owner tokens unique within this process.
    terms: AtomicU64,
}

// === impl Bank ===

impl Bank {
    /// A bank with no shards yet; call [`Bank::acquire_all`] in standalone mode.
    pub fn new(dir: PathBuf, pod: String, mode: Mode, fault: Option<Fault>) -> Self {
        Bank {
            dir,
            pod,
            mode,
            shards: RwLock::new(HashMap::new()),
            callbacks: tokio::sync::Mutex::new(()),
            fault,
            deposits: AtomicU64::new(0),
            terms: AtomicU64::new(0),
        }
    }

    /// The mode the bank runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Standalone start: acquires every shard.
    pub async fn acquire_all(&self) -> Result<(), BankError> {
        if let Mode::Standalone { shards } = self.mode {
            for id in 0..shards {
                self.acquire(id, 0).await?;
            }
        }
        Ok(())
    }

    /// Ids of the shards held now, sorted.
    pub fn held(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.table().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The sidecar's acquire callback: this pod now owns shard `id` at `epoch`.
    ///
    /// The sidecar acquires only once no one else can hold the shard, so its
    /// word is final: the same epoch again is an idempotent retry; any other
    /// epoch (a missed release, a restarted sidecar whose epochs start lower)
    /// or a failed log means the held state may be stale, so it is dropped
    /// and the log is replayed — it holds every acknowledged write of every owner.
    pub async fn acquire(&self, id: u32, epoch: u64) -> Result<(), BankError> {
        let _serial = self.callbacks.lock().await;
        if let Some(shard) = self.get(id) {
            if shard.epoch() == epoch && !shard.is_failed() {
                return Ok(());
            }
            self.write_table().remove(&id);
            shard.close().await;
        }
        let term = self.terms.fetch_add(1, Ordering::SeqCst);
        let owner = format!("{}/{}", self.pod, unique_token(term));
        let shard = Shard::open(&self.dir, id, owner, epoch)
            .await
            .map_err(|e| BankError::Internal(e.to_string()))?;
        self.write_table().insert(id, Arc::new(shard));
        Ok(())
    }

    /// The sidecar's release callback: drains, flushes and drops the shard (idempotent).
    pub async fn release(&self, id: u32, epoch: u64) -> Result<(), BankError> {
        let _serial = self.callbacks.lock().await;
        let Some(shard) = self.get(id) else {
            return Ok(());
        };
        if epoch < shard.epoch() {
            return Err(stale(&shard, epoch));
        }
        self.write_table().remove(&id);
        shard.close().await;
        Ok(())
    }

    /// Deposits `amount` into `account` under op id `op`.
    pub async fn deposit(
        &self,
        route: Route,
        account: &str,
        op: &str,
        amount: u64,
    ) -> Result<Outcome, BankError> {
        let shard = self.shard_for(route, account)?;
        if let Some(Fault::LoseEveryNthDeposit(n)) = self.fault {
            let count = self.deposits.fetch_add(1, Ordering::SeqCst) + 1;
            if n > 0 && count % n == 0 {
                let balance = shard.balance(account).await.map_err(|e| map(&shard, e))?;
                return Ok(Outcome::Applied {
                    balance: balance.saturating_add(amount),
                });
            }
        }
        let cmd = Command::Deposit {
            account: account.to_string(),
            op: op.to_string(),
            amount,
        };
        shard.execute(&cmd).await.map_err(|e| map(&shard, e))
    }

    /// Withdraws `amount` from `account` under op id `op` unless it would overdraw.
    pub async fn withdraw(
        &self,
        route: Route,
        account: &str,
        op: &str,
        amount: u64,
    ) -> Result<Outcome, BankError> {
        let cmd = Command::Withdraw {
            account: account.to_string(),
            op: op.to_string(),
            amount,
        };
        self.run(route, account, &cmd).await
    }

    /// Makes sure op `op` on `account` is never applied; returns its final outcome.
    pub async fn cancel(
        &self,
        route: Route,
        account: &str,
        op: &str,
    ) -> Result<Outcome, BankError> {
        let cmd = Command::Cancel {
            account: account.to_string(),
            op: op.to_string(),
        };
        self.run(route, account, &cmd).await
    }

    /// Balance of `account` (0 if never seen).
    pub async fn balance(&self, route: Route, account: &str) -> Result<u64, BankError> {
        let shard = self.shard_for(route, account)?;
        shard.balance(account).await.map_err(|e| map(&shard, e))
    }

    async fn run(&self, route: Route, account: &str, cmd: &Command) -> Result<Outcome, BankError> {
        let shard = self.shard_for(route, account)?;
        shard.execute(cmd).await.map_err(|e| map(&shard, e))
    }

    /// The held shard a request for `account` belongs to, after the epoch fence.
    fn shard_for(&self, route: Route, account: &str) -> Result<Arc<Shard>, BankError> {
        let (id, epoch) = match self.mode {
            Mode::Standalone { shards } => (shard_of(account, shards), None),
            Mode::Mesh => {
                let id = route.shard.ok_or_else(|| {
                    BankError::BadRequest("missing x-shardmesh-shard header".to_string())
                })?;
                let epoch = route.epoch.ok_or_else(|| {
                    BankError::BadRequest("missing x-shardmesh-epoch header".to_string())
                })?;
                (id, Some(epoch))
            }
        };
        let shard = self.get(id).ok_or(BankError::NotOwned(id))?;
        match epoch {
            Some(got) if got < shard.epoch() => Err(stale(&shard, got)),
            _ => Ok(shard),
        }
    }

    fn get(&self, id: u32) -> Option<Arc<Shard>> {
        self.table().get(&id).cloned()
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u32, Arc<Shard>>> {
        // The table is only ever replaced whole-entry; a poisoned lock still holds a valid map.
        self.shards.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, Arc<Shard>>> {
        self.shards.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn stale(shard: &Shard, got: u64) -> BankError {
    BankError::StaleEpoch {
        shard: shard.id(),
        held: shard.epoch(),
        got,
    }
}

fn map(shard: &Shard, e: ShardError) -> BankError {
    match e {
        ShardError::NotOwned => BankError::NotOwned(shard.id()),
        ShardError::LogFailed => BankError::Unavailable(shard.id()),
        ShardError::Internal(msg) => BankError::Internal(msg),
    }
}

/// A token that differs between processes and between terms of one process.
fn unique_token(term: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.write_u64(term);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
#[path = "bank_tests.rs"]
mod tests;
