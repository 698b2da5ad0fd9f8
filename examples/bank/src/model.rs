//! Wire types of the bank API and the rules every input must pass.
//!
//! Validation happens once, here, before anything touches a shard: ids are
//! short and made of URL-safe characters (they end up in paths and log lines),
//! amounts are positive integers (cents) with a fixed ceiling.

use serde::{Deserialize, Serialize};

/// Largest amount one operation may move, in cents (ten billion units).
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;
/// Largest balance an account may reach, in cents; deposits beyond it are rejected.
pub const MAX_BALANCE: u64 = 1_000_000_000_000_000;
/// Longest account id or operation id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Largest request body the app reads, in bytes.
pub const MAX_BODY: usize = 16 * 1024;
/// Suffix room the transfer saga needs for its step op ids (`<op>:w` …).
const SAGA_SUFFIX: usize = 2;

/// Body of `POST /accounts/{id}/deposit` and `/withdraw`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    /// Amount in cents, `1..=MAX_AMOUNT`.
    pub amount: u64,
    /// Operation id: the same id returns the first answer.
    pub op: String,
}

/// Body of `POST /accounts/{id}/cancel`, used by the transfer saga to make
/// sure a deposit it gave up on can never be applied later.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Operation id of the deposit to cancel.
    pub op: String,
}

/// Body of `POST /transfers`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Account the money leaves.
    pub from: String,
    /// Account the money reaches.
    pub to: String,
    /// Amount in cents.
    pub amount: u64,
    /// Operation id of the whole transfer; the steps use `<op>:w`, `<op>:d`, `<op>:c`.
    pub op: String,
}

/// Body of the sidecar's `acquire` / `release` callbacks.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ShardCallback {
    /// Service name; must be `bank` when present.
    #[serde(default)]
    pub service: Option<String>,
    /// Shard id; must equal the id in the path.
    pub shard: u32,
    /// Ownership epoch the sidecar acquires or releases at.
    pub epoch: u64,
}

/// Checks an account id: 1..=128 bytes of `[A-Za-z0-9._:@-]`.
pub fn validate_account(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("account id must be 1..={MAX_ID_LEN} bytes"));
    }
    let ok = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("account id may only contain A-Z a-z 0-9 . _ : @ -".to_string())
    }
}

/// Checks an operation id: 1..=128 bytes of printable ASCII without spaces.
pub fn validate_op(op: &str) -> Result<(), String> {
    if op.is_empty() || op.len() > MAX_ID_LEN {
        return Err(format!("op must be 1..={MAX_ID_LEN} bytes"));
    }
    if op.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("op may only contain printable ASCII without spaces".to_string())
    }
}

/// Checks an amount: `1..=MAX_AMOUNT` cents.
pub fn validate_amount(amount: u64) -> Result<(), String> {
    if amount == 0 || amount > MAX_AMOUNT {
        return Err(format!(
            "amount must be an integer in 1..={MAX_AMOUNT} (cents)"
        ));
    }
    Ok(())
}

impl WriteRequest {
    /// Validates the body of a deposit or withdrawal.
    pub fn validate(&self) -> Result<(), String> {
        validate_amount(self.amount)?;
        validate_op(&self.op)
    }
}

impl TransferRequest {
    /// Validates a transfer, leaving room for the saga's step suffixes.
    pub fn validate(&self) -> Result<(), String> {
        validate_account(&self.from)?;
        validate_account(&self.to)?;
        validate_amount(self.amount)?;
        validate_op(&self.op)?;
        if self.op.len() > MAX_ID_LEN - SAGA_SUFFIX {
            return Err(format!(
                "transfer op must be at most {} bytes",
                MAX_ID_LEN - SAGA_SUFFIX
            ));
        }
        if self.from == self.to {
            return Err("from and to must differ".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_ids_and_amounts() {
        assert!(validate_account("acct-1").is_ok());
        assert!(validate_account("").is_err());
        assert!(validate_account("a/b").is_err());
        assert!(validate_account(&"a".repeat(129)).is_err());
        assert!(validate_op("x:w").is_ok());
        assert!(validate_op("has space").is_err());
        assert!(validate_amount(0).is_err());
        assert!(validate_amount(MAX_AMOUNT + 1).is_err());
        assert!(validate_amount(1).is_ok());
        let t = TransferRequest {
            from: "a".into(),
            to: "a".into(),
            amount: 1,
            op: "o".into(),
        };
        assert!(t.validate().is_err());
    }

    #[test]
    fn json_rejects_negative_fractional_and_unknown() {
        for body in [
            r#"{"amount": -5, "op": "x"}"#,
            r#"{"amount": 1.5, "op": "x"}"#,
            r#"{"amount": 1, "op": "x", "extra": 1}"#,
            r#"{"op": "x"}"#,
        ] {
            assert!(
                serde_json::from_str::<WriteRequest>(body).is_err(),
                "{body}"
            );
        }
    }
}
