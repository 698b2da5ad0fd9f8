//! The money check: what the balances must be, given every acknowledged operation.
//!
//! Each write ends up applied or not applied (ambiguous ones are resolved by
//! re-sending first). Then for every account
//! `balance = baseline + acked deposits − acked withdrawals ± done transfers`,
//! which covers: money is conserved (the totals match), no acknowledged
//! deposit is lost and no withdrawal is applied twice (either would leave an
//! account short). Re-sent ops must also return their first answer.

use serde::Serialize;

use crate::load::workload::{Kind, Planned};

/// Where a write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A definite answer said it moved money.
    Applied,
    /// A definite answer said it did not.
    NotApplied,
    /// No definite answer yet.
    Ambiguous,
}

/// One write the run sent.
#[derive(Debug, Clone)]
pub struct Record {
    /// The operation.
    pub plan: Planned,
    /// What we know about it.
    pub state: State,
    /// First definite answer (status, compact JSON body), to compare re-sends with.
    /// Kept as text: a few dozen bytes per write, bounded by `--max-requests`.
    pub first: Option<(u16, Box<str>)>,
    /// Came back ambiguous during the load phase.
    pub was_ambiguous: bool,
}

/// Result of the check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Everything matched.
    pub passed: bool,
    /// Human-readable problems (at most a few per kind).
    pub failures: Vec<String>,
    /// Sum of balances the acknowledged operations imply.
    pub expected_total: i128,
    /// Sum of balances read at the end.
    pub actual_total: i128,
    /// Acknowledged deposits.
    pub deposits_applied: u64,
    /// Acknowledged withdrawals.
    pub withdrawals_applied: u64,
    /// Completed transfers.
    pub transfers_applied: u64,
    /// Accounts whose balance differs from the expected one.
    pub accounts_wrong: u64,
}

/// Most per-account mismatches listed in the failures.
const LIST: usize = 10;

/// Checks `actual` balances (None = unreadable) against `baseline` and `records`.
pub fn verify(
    records: &[Record],
    baseline: &[u64],
    actual: &[Option<u64>],
    replay_mismatches: &[String],
) -> Verdict {
    let mut v = Verdict::default();
    let mut expected: Vec<i128> = baseline.iter().map(|b| i128::from(*b)).collect();
    let mut unresolved = 0u64;
    for r in records {
        let (from, to, amount) = (
            r.plan.account as usize,
            r.plan.to as usize,
            i128::from(r.plan.amount),
        );
        match r.state {
            State::Ambiguous => unresolved += 1,
            State::NotApplied => {}
            State::Applied => match r.plan.kind {
                Kind::Deposit => {
                    v.deposits_applied += 1;
                    add(&mut expected, from, amount);
                }
                Kind::Withdraw => {
                    v.withdrawals_applied += 1;
                    add(&mut expected, from, -amount);
                }
                Kind::Transfer => {
                    v.transfers_applied += 1;
                    add(&mut expected, from, -amount);
                    add(&mut expected, to, amount);
                }
                Kind::Balance => {}
            },
        }
    }
    if unresolved > 0 {
        v.failures.push(format!(
            "{unresolved} operations stayed ambiguous after resolution: cannot verify their accounts"
        ));
    }
    v.expected_total = expected.iter().sum();
    for (i, (want, got)) in expected.iter().zip(actual).enumerate() {
        match got {
            None => {
                v.accounts_wrong += 1;
                v.failures
                    .push(format!("account #{i}: balance could not be read"));
            }
            Some(got) => {
                let got = i128::from(*got);
                v.actual_total += got;
                if got != *want {
                    v.accounts_wrong += 1;
                    if v.accounts_wrong as usize <= LIST {
                        let what = if got < *want {
                            "money missing: a lost deposit or a withdrawal applied twice"
                        } else {
                            "money created: a lost withdrawal or a deposit applied twice"
                        };
                        v.failures.push(format!(
                            "account #{i}: expected {want}, found {got} ({} cents {what})",
                            (got - want).abs()
                        ));
                    }
                }
            }
        }
    }
    if v.expected_total != v.actual_total {
        v.failures.push(format!(
            "money not conserved: acknowledged operations imply {} cents in total, balances hold {}",
            v.expected_total, v.actual_total
        ));
    }
    v.failures
        .extend(replay_mismatches.iter().take(LIST).cloned());
    if replay_mismatches.len() > LIST {
        v.failures.push(format!(
            "… {} re-send mismatches in all",
            replay_mismatches.len()
        ));
    }
    v.passed = v.failures.is_empty();
    v
}

fn add(expected: &mut [i128], i: usize, amount: i128) {
    if let Some(e) = expected.get_mut(i) {
        *e += amount;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: Kind, account: u32, to: u32, amount: u64, state: State) -> Record {
        Record {
            plan: Planned {
                index: 0,
                kind,
                account,
                to,
                amount,
            },
            state,
            first: None,
            was_ambiguous: false,
        }
    }

    #[test]
    fn matching_balances_pass() {
        let records = [
            rec(Kind::Deposit, 0, 0, 100, State::Applied),
            rec(Kind::Withdraw, 0, 0, 30, State::Applied),
            rec(Kind::Withdraw, 1, 0, 30, State::NotApplied),
            rec(Kind::Transfer, 0, 1, 20, State::Applied),
        ];
        let v = verify(&records, &[5, 0], &[Some(55), Some(20)], &[]);
        assert!(v.passed, "{:?}", v.failures);
        assert_eq!((v.expected_total, v.actual_total), (75, 75));
    }

    #[test]
    fn a_lost_deposit_fails() {
        let records = [
            rec(Kind::Deposit, 0, 0, 100, State::Applied),
            rec(Kind::Deposit, 1, 0, 50, State::Applied),
        ];
        let v = verify(&records, &[0, 0], &[Some(100), Some(0)], &[]);
        assert!(!v.passed);
        assert!(
            v.failures.iter().any(|f| f.contains("money missing")),
            "{:?}",
            v.failures
        );
        assert!(v.failures.iter().any(|f| f.contains("not conserved")));
    }

    #[test]
    fn a_double_withdrawal_fails_even_when_totals_could_hide_it() {
        // Account 0 withdrew twice, account 1 got an extra deposit: totals match, accounts don't.
        let records = [
            rec(Kind::Deposit, 0, 0, 100, State::Applied),
            rec(Kind::Withdraw, 0, 0, 10, State::Applied),
        ];
        let v = verify(&records, &[0, 0], &[Some(80), Some(10)], &[]);
        assert!(!v.passed);
        assert_eq!(v.accounts_wrong, 2);
    }

    #[test]
    fn unresolved_and_replay_mismatches_fail() {
        let records = [rec(Kind::Deposit, 0, 0, 1, State::Ambiguous)];
        assert!(!verify(&records, &[0], &[Some(0)], &[]).passed);
        assert!(!verify(&[], &[0], &[Some(0)], &["op x changed its answer".into()]).passed);
        assert!(!verify(&[], &[0], &[None], &[]).passed);
    }
}
