//! The deterministic operation sequence: operation `i` depends only on the
//! seed and `i`, so a seed reproduces the same requests whatever the timing.

/// What kind of request an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `POST /accounts/{a}/deposit`.
    Deposit,
    /// `POST /accounts/{a}/withdraw`.
    Withdraw,
    /// `POST /transfers`.
    Transfer,
    /// `GET /accounts/{a}`.
    Balance,
}

/// Relative weights of the kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Weight of deposits.
    pub deposit: u32,
    /// Weight of withdrawals.
    pub withdraw: u32,
    /// Weight of transfers.
    pub transfer: u32,
    /// Weight of balance reads.
    pub balance: u32,
}

/// One planned operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Index in the sequence.
    pub index: u64,
    /// Kind.
    pub kind: Kind,
    /// Account (the source for transfers).
    pub account: u32,
    /// Destination account of a transfer (unused otherwise).
    pub to: u32,
    /// Amount in cents (unused for balance reads).
    pub amount: u64,
}

// === impl Kind ===

impl Kind {
    /// Lower-case name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deposit => "deposit",
            Kind::Withdraw => "withdraw",
            Kind::Transfer => "transfer",
            Kind::Balance => "balance",
        }
    }
}

// === impl Mix ===

impl Default for Mix {
    fn default() -> Self {
        Mix {
            deposit: 40,
            withdraw: 20,
            transfer: 20,
            balance: 20,
        }
    }
}

impl Mix {
    /// Parses `deposit=40,withdraw=20,transfer=20,balance=20` (omitted kinds weigh 0).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut mix = Mix {
            deposit: 0,
            withdraw: 0,
            transfer: 0,
            balance: 0,
        };
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix {part}: expected KIND=WEIGHT"))?;
            let w: u32 =
                v.parse().ok().filter(|w| *w <= 1_000_000).ok_or_else(|| {
                    format!("--mix {part}: weight must be an integer in 0..=1000000")
                })?;
            match k {
                "deposit" => mix.deposit = w,
                "withdraw" => mix.withdraw = w,
                "transfer" => mix.transfer = w,
                "balance" => mix.balance = w,
                _ => {
                    return Err(format!(
                        "--mix {k}: kinds are deposit, withdraw, transfer, balance"
                    ))
                }
            }
        }
        if mix.total() == 0 {
            return Err("--mix: at least one weight must be positive".to_string());
        }
        Ok(mix)
    }

    fn total(&self) -> u64 {
        [self.deposit, self.withdraw, self.transfer, self.balance]
            .iter()
            .map(|w| u64::from(*w))
            .sum()
    }

    fn pick(&self, r: u64) -> Kind {
        let mut r = r % self.total();
        for (w, kind) in [
            (self.deposit, Kind::Deposit),
            (self.withdraw, Kind::Withdraw),
            (self.transfer, Kind::Transfer),
        ] {
            if r < u64::from(w) {
                return kind;
            }
            r -= u64::from(w);
        }
        Kind::Balance
    }
}

/// SplitMix64: a tiny, well-mixed, seedable generator (no dependency needed).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Operation number `index` of the sequence for `seed` over `accounts` accounts (≥ 2).
pub fn plan(seed: u64, index: u64, accounts: u32, mix: &Mix) -> Planned {
    let mut s = seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    splitmix(&mut s);
    let kind = mix.pick(splitmix(&mut s));
    let n = u64::from(accounts.max(2));
    let account = (splitmix(&mut s) % n) as u32;
    // A different account: offset by 1..n-1.
    let to = ((u64::from(account) + 1 + splitmix(&mut s) % (n - 1)) % n) as u32;
    let amount = match kind {
        Kind::Deposit => 1 + splitmix(&mut s) % 10_000,
        _ => 1 + splitmix(&mut s) % 5_000,
    };
    Planned {
        index,
        kind,
        account,
        to,
        amount,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_mix_is_respected() {
        let mix = Mix::default();
        let a: Vec<_> = (0..1000).map(|i| plan(7, i, 10, &mix)).collect();
        let b: Vec<_> = (0..1000).map(|i| plan(7, i, 10, &mix)).collect();
        assert_eq!(a, b);
        assert_ne!(
            a,
            (0..1000).map(|i| plan(8, i, 10, &mix)).collect::<Vec<_>>()
        );
        assert!(a
            .iter()
            .all(|p| p.account < 10 && p.to < 10 && p.account != p.to));
        let deposits = a.iter().filter(|p| p.kind == Kind::Deposit).count();
        assert!(
            (300..500).contains(&deposits),
            "{deposits} deposits of 1000 at weight 40%"
        );
        let only = Mix::parse("balance=1").unwrap();
        assert!((0..100).all(|i| plan(1, i, 3, &only).kind == Kind::Balance));
    }

    #[test]
    fn mix_parse_errors() {
        assert!(Mix::parse("deposit=x").is_err());
        assert!(Mix::parse("loan=1").is_err());
        assert!(Mix::parse("deposit").is_err());
    }
}
