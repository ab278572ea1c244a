//! The PostgreSQL backend, for several daemons that serve one membership: the schema and
//! its migrations (`schema.rs`, `migrations/*.sql`).
//!
//! The SQL is part of the design: the schema's constraints hold the rules (one binding per
//! uid and per account, a token spent once, an organization's last admin) even against a
//! bug above them, and the feed's sequence numbers are dense and in commit order across
//! daemons.

pub mod schema;
