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

            /// The 16 bytes that bind it into a key derivation or a seal's associated data.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        /// In the OpenAPI document, the UUID it is on the wire.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

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
id_type!(
    /// A sitting (one exam session of the platform: many attempts).
    SittingId
);
id_type!(
    /// One candidate's attempt at a sitting: the unit of keys, recording and retention.
    AttemptId
);
id_type!(
    /// One of an attempt's recording streams (drawn by the agent).
    StreamId
);
id_type!(
    /// One review of an attempt (a round).
    ReviewId
);
id_type!(
    /// One flag of a review.
    FlagId
);

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The same UUID makes ids of different kinds that stay apart in the types but agree
    /// on the wire.
    #[test]
    fn kinds_share_the_wire_form() {
        let u = uuid::Uuid::new_v4();
        let (a, s) = (AttemptId::from(u), SittingId::from(u));
        assert_eq!(a.to_string(), s.to_string());
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(s).unwrap()
        );
    }
}
