//! The domain's ids, one type each, so that one kind of id cannot be passed where another is
//! expected; each is a UUID on the wire (serialised as one) and in the database. Parsed
//! once where it enters (a path, a form, a row).

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A staff member's account.
    StaffId
);

#[cfg(test)]
mod tests {
    use super::StaffId;

    /// On the wire an id is the bare UUID it always was.
    #[test]
    fn an_id_is_a_bare_uuid_on_the_wire_and_in_text() {
        let id = StaffId::random();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.as_uuid()));
        assert_eq!(serde_json::from_str::<StaffId>(&json).unwrap(), id);
        assert_eq!(id.to_string().parse::<StaffId>().unwrap(), id);
        assert!("not-a-uuid".parse::<StaffId>().is_err());
    }
}
