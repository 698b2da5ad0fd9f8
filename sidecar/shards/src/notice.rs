//! Release notices: "I released shard S of service X at epoch E to member
//! T", gossiped by the old owner so the new owner can acquire.
//!
//! Wire format (version 2, all integers big-endian, at most
//! [`MAX_NOTICE_LEN`] bytes):
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | magic `b'R'` |
//! | 1 | version `2` |
//! | 4 | shard (u32) |
//! | 8 | epoch (u64) |
//! | 8 | recipient: [`recipient_id`] of the next owner in the releaser's view, 0 if none |
//! | 1 + n | service name: length n in 1..=63, UTF-8 |
//! | 1 + m | releasing member id: length m in 1..=253, UTF-8 |
//!
//! Version 1 (the same without the recipient) is still read, with recipient
//! 0: such a notice frees the shard for nobody, the settled-view barrier
//! does. Anything else (short, long, trailing bytes, bad lengths or UTF-8,
//! another magic or version) is rejected with a [`NoticeError`].
//!
//! Why the recipient: when views change quickly (two members joining at
//! once), the old owner may release a shard to the owner of its view while
//! another member, in a newer view, also waits for that old owner's
//! release. Only the member the shard was released to may take it on the
//! notice; any other waits for the barrier (seen in the e2e scale-out: two
//! members serving one shard for 0.2 s).

use crate::MemberId;

/// First byte of every encoded notice, so gossip payloads can be told apart.
pub const NOTICE_MAGIC: u8 = b'R';
/// The wire version this code writes (it also reads version 1).
pub const NOTICE_VERSION: u8 = 2;
/// Longest service name (a DNS label).
pub const MAX_SERVICE_LEN: usize = 63;
/// Longest member id (a DNS subdomain, like a pod name).
pub const MAX_MEMBER_LEN: usize = 253;
/// Upper bound of an encoded notice.
pub const MAX_NOTICE_LEN: usize = 2 + 4 + 8 + 8 + 1 + MAX_SERVICE_LEN + 1 + MAX_MEMBER_LEN;

/// A shard's release by its old owner, carried through gossip broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseNotice {
    /// The service the shard belongs to.
    pub service: String,
    /// The released shard.
    pub shard: u32,
    /// The epoch the old owner held it at; the new owner's epoch exceeds it.
    pub epoch: u64,
    /// The member that released it.
    pub from: MemberId,
    /// [`recipient_id`] of the member it was released to (the owner in the
    /// releaser's view), 0 when none: only that member may acquire on it.
    pub to: u64,
}

/// Names the recipient of a release in a notice: the XXH3-64 view id of
/// the member alone (8 bytes whatever the id's length, so a notice stays
/// within the gossip broadcast limit).
pub fn recipient_id(member: &MemberId) -> u64 {
    crate::view_id(std::slice::from_ref(member))
}

/// Why bytes are not a valid release notice.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    /// Fewer bytes than the fields need.
    #[error("release notice truncated")]
    Truncated,
    /// More bytes than the fields use, or more than [`MAX_NOTICE_LEN`].
    #[error("release notice has trailing bytes or is too long")]
    TooLong,
    /// Not a release notice (wrong magic byte).
    #[error("not a release notice (magic {0:#04x})")]
    BadMagic(u8),
    /// A version this code does not read.
    #[error("unsupported release notice version {0}")]
    BadVersion(u8),
    /// A name field is empty, over its limit, or not UTF-8.
    #[error("release notice field {0} is empty, too long or not UTF-8")]
    BadField(&'static str),
}

// === impl ReleaseNotice ===

impl ReleaseNotice {
    /// Encodes the notice; fails when a name exceeds its limit.
    pub fn encode(&self) -> Result<Vec<u8>, NoticeError> {
        let service = self.service.as_bytes();
        let from = self.from.as_str().as_bytes();
        check_len("service", service.len(), MAX_SERVICE_LEN)?;
        check_len("from", from.len(), MAX_MEMBER_LEN)?;
        let mut out = Vec::with_capacity(16 + service.len() + from.len());
        out.extend_from_slice(&[NOTICE_MAGIC, NOTICE_VERSION]);
        out.extend_from_slice(&self.shard.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.to.to_be_bytes());
        for field in [service, from] {
            // check_len bounded both lengths to <= 253.
            out.push(field.len() as u8);
            out.extend_from_slice(field);
        }
        Ok(out)
    }

    /// Decodes a notice, rejecting anything malformed without panicking.
    pub fn decode(bytes: &[u8]) -> Result<Self, NoticeError> {
        if bytes.len() > MAX_NOTICE_LEN {
            return Err(NoticeError::TooLong);
        }
        let mut r = Reader(bytes);
        let [magic, version] = r.take::<2>()?;
        if magic != NOTICE_MAGIC {
            return Err(NoticeError::BadMagic(magic));
        }
        if version != NOTICE_VERSION && version != 1 {
            return Err(NoticeError::BadVersion(version));
        }
        let shard = u32::from_be_bytes(r.take()?);
        let epoch = u64::from_be_bytes(r.take()?);
        let to = if version == 1 {
            0
        } else {
            u64::from_be_bytes(r.take()?)
        };
        let service = r.name("service", MAX_SERVICE_LEN)?;
        let from = r.name("from", MAX_MEMBER_LEN)?;
        if !r.0.is_empty() {
            return Err(NoticeError::TooLong);
        }
        Ok(Self {
            service: service.to_owned(),
            shard,
            epoch,
            from: MemberId::new(from),
            to,
        })
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), NoticeError> {
    if len == 0 || len > max {
        return Err(NoticeError::BadField(field));
    }
    Ok(())
}

/// A cursor over the undecoded rest of a notice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], NoticeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(NoticeError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn name(&mut self, field: &'static str, max: usize) -> Result<&'a str, NoticeError> {
        let [len] = self.take::<1>()?;
        let len = usize::from(len);
        check_len(field, len, max)?;
        if self.0.len() < len {
            return Err(NoticeError::Truncated);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(head).map_err(|_| NoticeError::BadField(field))
    }
}

#[cfg(test)]
mod tests;
