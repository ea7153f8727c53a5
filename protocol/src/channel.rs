//! Messages on the WebRTC data channel (reliable, ordered; binary messages of at most
//! 64 KiB, what every stack accepts). A sealed chunk travels in parts; the server answers
//! each chunk, stream end and heartbeat with a result once it is durable, carrying the same
//! status and stable code the HTTPS API would have answered, so the agent decides alike.
//!
//! ```text
//! agent → server
//!   0x01 part       flags u8 (bit 0: last part) ‖ stream 16 ‖ index u32 ‖ part u16 ‖ bytes
//!   0x02 end        stream 16 ‖ final index u32
//!   0x03 heartbeat  backlog chunks u64 ‖ backlog bytes u64
//! server → agent
//!   0x81 result     of u8 (1 chunk, 2 end, 3 heartbeat) ‖ status u16 ‖ stream 16 ‖ index u32
//!                   ‖ retry-after s u32 ‖ code length u8 ‖ code (ASCII, ≤ 64)
//! ```
//! Integers are big-endian.

use uuid::Uuid;

pub const MAX_MESSAGE: usize = 64 * 1024;
const PART_HEADER: usize = 1 + 1 + 16 + 4 + 2;
pub const MAX_PART: usize = MAX_MESSAGE - PART_HEADER;
const MAX_CODE: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("empty or oversized message")]
    BadLength,
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("part out of sequence")]
    OutOfSequence,
    #[error("chunk larger than {0} bytes")]
    TooLarge(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMessage<'a> {
    Part {
        stream: Uuid,
        index: u32,
        part: u16,
        last: bool,
        bytes: &'a [u8],
    },
    End {
        stream: Uuid,
        final_index: u32,
    },
    Heartbeat {
        backlog_chunks: u64,
        backlog_bytes: u64,
    },
}

/// What a result answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Chunk,
    End,
    Heartbeat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultMessage {
    pub of: Answered,
    /// The HTTP status the HTTPS API would have answered (201, 200, 409, 507…).
    pub status: u16,
    pub stream: Uuid,
    pub index: u32,
    pub retry_after_s: u32,
    /// The stable error code ("" on success).
    pub code: String,
}

fn uuid_at(b: &[u8], at: usize) -> Uuid {
    Uuid::from_bytes(b[at..at + 16].try_into().expect("16 bytes"))
}

/// The messages carrying one sealed chunk, in order.
pub fn chunk_messages(
    stream: Uuid,
    index: u32,
    chunk: &[u8],
) -> impl Iterator<Item = Vec<u8>> + '_ {
    let parts = chunk.len().div_ceil(MAX_PART).max(1);
    (0..parts).map(move |p| {
        let bytes = &chunk[(p * MAX_PART).min(chunk.len())..((p + 1) * MAX_PART).min(chunk.len())];
        let mut m = Vec::with_capacity(PART_HEADER + bytes.len());
        m.push(0x01);
        m.push(u8::from(p + 1 == parts));
        m.extend_from_slice(stream.as_bytes());
        m.extend_from_slice(&index.to_be_bytes());
        m.extend_from_slice(&(p as u16).to_be_bytes());
        m.extend_from_slice(bytes);
        m
    })
}

pub fn end_message(stream: Uuid, final_index: u32) -> Vec<u8> {
    [&[0x02][..], stream.as_bytes(), &final_index.to_be_bytes()].concat()
}

pub fn heartbeat_message(backlog_chunks: u64, backlog_bytes: u64) -> Vec<u8> {
    [
        &[0x03][..],
        &backlog_chunks.to_be_bytes(),
        &backlog_bytes.to_be_bytes(),
    ]
    .concat()
}

impl<'a> AgentMessage<'a> {
    pub fn parse(m: &'a [u8]) -> Result<Self, ChannelError> {
        if m.is_empty() || m.len() > MAX_MESSAGE {
            return Err(ChannelError::BadLength);
        }
        match m[0] {
            0x01 if m.len() >= PART_HEADER => Ok(AgentMessage::Part {
                last: m[1] & 1 != 0,
                stream: uuid_at(m, 2),
                index: u32::from_be_bytes(m[18..22].try_into().expect("4 bytes")),
                part: u16::from_be_bytes(m[22..24].try_into().expect("2 bytes")),
                bytes: &m[PART_HEADER..],
            }),
            0x01 => Err(ChannelError::Truncated("part")),
            0x02 if m.len() == 21 => Ok(AgentMessage::End {
                stream: uuid_at(m, 1),
                final_index: u32::from_be_bytes(m[17..21].try_into().expect("4 bytes")),
            }),
            0x02 => Err(ChannelError::Truncated("end")),
            0x03 if m.len() == 17 => Ok(AgentMessage::Heartbeat {
                backlog_chunks: u64::from_be_bytes(m[1..9].try_into().expect("8 bytes")),
                backlog_bytes: u64::from_be_bytes(m[9..17].try_into().expect("8 bytes")),
            }),
            0x03 => Err(ChannelError::Truncated("heartbeat")),
            k => Err(ChannelError::UnknownKind(k)),
        }
    }
}

impl ResultMessage {
    pub fn encode(&self) -> Vec<u8> {
        let code = &self.code.as_bytes()[..self.code.len().min(MAX_CODE)];
        let of = match self.of {
            Answered::Chunk => 1,
            Answered::End => 2,
            Answered::Heartbeat => 3,
        };
        let mut m = Vec::with_capacity(30 + code.len());
        m.extend_from_slice(&[0x81, of]);
        m.extend_from_slice(&self.status.to_be_bytes());
        m.extend_from_slice(self.stream.as_bytes());
        m.extend_from_slice(&self.index.to_be_bytes());
        m.extend_from_slice(&self.retry_after_s.to_be_bytes());
        m.push(code.len() as u8);
        m.extend_from_slice(code);
        m
    }

    pub fn parse(m: &[u8]) -> Result<Self, ChannelError> {
        if m.len() < 29 || m[0] != 0x81 {
            return Err(ChannelError::Truncated("result"));
        }
        let of = match m[1] {
            1 => Answered::Chunk,
            2 => Answered::End,
            3 => Answered::Heartbeat,
            k => return Err(ChannelError::UnknownKind(k)),
        };
        let len = m[28] as usize;
        let code = m
            .get(29..29 + len)
            .ok_or(ChannelError::Truncated("result code"))?;
        Ok(ResultMessage {
            of,
            status: u16::from_be_bytes(m[2..4].try_into().expect("2 bytes")),
            stream: uuid_at(m, 4),
            index: u32::from_be_bytes(m[20..24].try_into().expect("4 bytes")),
            retry_after_s: u32::from_be_bytes(m[24..28].try_into().expect("4 bytes")),
            code: String::from_utf8_lossy(code).into_owned(),
        })
    }
}

/// Puts one peer's chunks back together: one chunk at a time (the channel is ordered),
/// at most `max_chunk` bytes, so a slow or hostile peer never grows memory beyond it.
#[derive(Debug)]
pub struct Reassembler {
    max_chunk: usize,
    current: Option<(Uuid, u32, u16, Vec<u8>)>,
}

impl Reassembler {
    pub fn new(max_chunk: usize) -> Self {
        Self {
            max_chunk,
            current: None,
        }
    }

    /// Takes one part; returns the whole chunk (stream, index, bytes) with its last part.
    pub fn push(
        &mut self,
        stream: Uuid,
        index: u32,
        part: u16,
        last: bool,
        bytes: &[u8],
    ) -> Result<Option<(Uuid, u32, Vec<u8>)>, ChannelError> {
        match &mut self.current {
            None if part == 0 => {
                if bytes.len() > self.max_chunk {
                    return Err(ChannelError::TooLarge(self.max_chunk));
                }
                self.current = Some((stream, index, 1, bytes.to_vec()));
            }
            Some((s, i, next, buf)) if *s == stream && *i == index && *next == part => {
                if buf.len() + bytes.len() > self.max_chunk {
                    self.current = None;
                    return Err(ChannelError::TooLarge(self.max_chunk));
                }
                buf.extend_from_slice(bytes);
                *next = next.checked_add(1).ok_or(ChannelError::OutOfSequence)?;
            }
            _ => {
                self.current = None;
                return Err(ChannelError::OutOfSequence);
            }
        }
        if !last {
            return Ok(None);
        }
        Ok(self.current.take().map(|(s, i, _, buf)| (s, i, buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reassemble(
        r: &mut Reassembler,
        messages: &[Vec<u8>],
    ) -> Result<Option<(Uuid, u32, Vec<u8>)>, ChannelError> {
        let mut out = None;
        for m in messages {
            let AgentMessage::Part {
                stream,
                index,
                part,
                last,
                bytes,
            } = AgentMessage::parse(m)?
            else {
                panic!("not a part")
            };
            out = r.push(stream, index, part, last, bytes)?;
        }
        Ok(out)
    }

    #[test]
    fn a_chunk_goes_in_64_kib_messages_and_comes_back_whole() {
        let stream = Uuid::new_v4();
        for size in [
            0,
            1,
            MAX_PART - 1,
            MAX_PART,
            MAX_PART + 1,
            3 * MAX_PART + 17,
        ] {
            let chunk: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let messages: Vec<_> = chunk_messages(stream, 7, &chunk).collect();
            assert!(messages.iter().all(|m| m.len() <= MAX_MESSAGE));
            assert_eq!(messages.len(), size.div_ceil(MAX_PART).max(1));
            let mut r = Reassembler::new(1 << 20);
            assert_eq!(
                reassemble(&mut r, &messages).unwrap(),
                Some((stream, 7, chunk)),
                "{size}"
            );
        }
    }

    #[test]
    fn disorder_and_excess_are_refused_and_the_bound_holds() {
        let stream = Uuid::new_v4();
        let chunk = vec![1u8; 2 * MAX_PART + 5];
        let messages: Vec<_> = chunk_messages(stream, 1, &chunk).collect();
        let mut r = Reassembler::new(1 << 20);
        assert_eq!(
            reassemble(&mut r, &[messages[0].clone(), messages[2].clone()]),
            Err(ChannelError::OutOfSequence)
        );
        // After a refusal the next chunk starts clean.
        assert!(reassemble(&mut r, &messages).unwrap().is_some());
        let mut small = Reassembler::new(MAX_PART + 10);
        assert_eq!(
            reassemble(&mut small, &messages),
            Err(ChannelError::TooLarge(MAX_PART + 10))
        );
        // Interleaving two chunks is disorder.
        let other: Vec<_> = chunk_messages(stream, 2, &chunk).collect();
        assert_eq!(
            reassemble(&mut r, &[messages[0].clone(), other[1].clone()]),
            Err(ChannelError::OutOfSequence)
        );
    }

    #[test]
    fn control_messages_and_results_round_trip_and_garbage_is_refused() {
        let s = Uuid::new_v4();
        assert_eq!(
            AgentMessage::parse(&end_message(s, 9)).unwrap(),
            AgentMessage::End {
                stream: s,
                final_index: 9
            }
        );
        assert_eq!(
            AgentMessage::parse(&heartbeat_message(3, 400)).unwrap(),
            AgentMessage::Heartbeat {
                backlog_chunks: 3,
                backlog_bytes: 400
            }
        );
        let r = ResultMessage {
            of: Answered::Chunk,
            status: 507,
            stream: s,
            index: 4,
            retry_after_s: 30,
            code: "storage_full".into(),
        };
        assert_eq!(ResultMessage::parse(&r.encode()).unwrap(), r);
        for bad in [&[][..], &[0x09], &[0x01, 0], &[0x02; 20], &[0x03; 16]] {
            assert!(AgentMessage::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AgentMessage::parse(&vec![0x01; MAX_MESSAGE + 1]).is_err());
        assert!(ResultMessage::parse(&r.encode()[..20]).is_err());
    }
}
