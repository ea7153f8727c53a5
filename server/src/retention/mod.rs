//! How long recordings are kept, and (to come with the rest of issue 8) the worker that
//! destroys what is due. `policy` is the one place where the rules live.

pub mod policy;
