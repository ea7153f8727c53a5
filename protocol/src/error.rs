use thiserror::Error;

/// Every way a chunk or a stream of chunks can fail to open. Each tampering class has
/// its own variant so that the reviewer is told *what* went wrong, not just "bad".
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("chunk is shorter than its header ({0} bytes)")]
    Truncated(usize),
    #[error("invalid chunk header: {0}")]
    InvalidHeader(&'static str),
    #[error("unsupported wire format version {0}")]
    UnsupportedVersion(u8),
    #[error("chunk body length {actual} does not match the header's {declared}")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("chunk belongs to another attempt")]
    WrongAttempt,
    #[error("chunk belongs to another stream")]
    WrongStream,
    #[error("chunk index {actual} where {expected} was expected (reordered or missing)")]
    OutOfOrder { expected: u32, actual: u32 },
    #[error("chunk {index} is not chained to its predecessor")]
    BrokenChain { index: u32 },
    #[error("chunk {index} follows the stream's final chunk")]
    AfterFinal { index: u32 },
    #[error("stream has no sealed final chunk (ended abruptly or truncated)")]
    MissingFinal,
    #[error("authentication failed: wrong key or tampered chunk")]
    DecryptionFailed,
    #[error("chunk index space exhausted")]
    IndexOverflow,
    #[error("invalid fragment payload: {0}")]
    InvalidPayload(&'static str),
    #[error("invalid stream opening: {0}")]
    InvalidOpening(&'static str),
    #[error("invalid launch token: {0}")]
    InvalidLaunchToken(&'static str),
    #[error("invalid destruction receipt: {0}")]
    InvalidReceipt(&'static str),
}
