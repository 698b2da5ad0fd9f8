//! Reads a foca packet's header and membership updates without applying
//! them, so the Lifeguard layer can see probes, acks and suspicions that
//! foca does not report. Uses foca's own postcard codec, so it reads exactly
//! what foca reads.

use bytes::Buf;
use foca::{Codec, Header, Member, Message, PostcardCodec};

use crate::id::NodeId;

/// Header and piggybacked updates of a packet, or `None` if it does not decode.
pub(crate) fn inspect(packet: &[u8]) -> Option<(Header<NodeId>, Vec<Member<NodeId>>)> {
    let mut codec = PostcardCodec;
    let mut buf = packet;
    let header: Header<NodeId> = codec.decode_header(&mut buf).ok()?;
    let mut updates = Vec::new();
    if buf.remaining() >= 2 && header.message != Message::Broadcast {
        let n = buf.get_u16();
        for _ in 0..n {
            // Each member takes several bytes, so a lying count fails at the
            // end of the (bounded) packet instead of allocating.
            updates.push(codec.decode_member(&mut buf).ok()?);
        }
    }
    Some((header, updates))
}

/// Header of a packet foca produced.
pub(crate) fn header(packet: &[u8]) -> Option<Header<NodeId>> {
    let mut buf = packet;
    PostcardCodec.decode_header(&mut buf).ok()
}
