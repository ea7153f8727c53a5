//! Reviews and flags as stored: the fixed lists (categories, severities, outcomes) are
//! enums parsed when a row or a request comes in.

use crate::{AttemptId, FlagId, ReviewId, StaffId};

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("unknown {} {s:?}", stringify!($name))),
                }
            }
        }
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> { Self::parse(&s) }
        }
        impl From<$name> for &'static str {
            fn from(v: $name) -> &'static str { v.as_str() }
        }
    };
}
pub(crate) use named_enum;

named_enum! {
    /// What a reviewer may flag (a fixed list: no free-form category).
    FlagCategory {
        OtherPerson = "other_person",
        CandidateAbsent = "candidate_absent",
        Talking = "talking",
        PhoneOrDevice = "phone_or_device",
        NotesOrDocuments = "notes_or_documents",
        Headphones = "headphones",
        RecordingInterrupted = "recording_interrupted",
        Other = "other",
    }
}

named_enum! {
    Severity { Low = "low", Medium = "medium", High = "high" }
}

named_enum! {
    ReviewOutcome { NoIrregularity = "no_irregularity", Irregularities = "irregularities" }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: ReviewId,
    pub attempt_id: AttemptId,
    /// 1 for the first review, 2 for a second one.
    pub round: u32,
    pub reviewer_id: StaffId,
    pub started_at_ms: i64,
    pub submitted_at_ms: Option<i64>,
    pub outcome: Option<ReviewOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub id: FlagId,
    pub review_id: ReviewId,
    pub attempt_id: AttemptId,
    /// Wall-clock, unix milliseconds.
    pub start_ms: i64,
    pub end_ms: i64,
    pub category: FlagCategory,
    pub severity: Severity,
    pub note: String,
    pub updated_at_ms: i64,
}
