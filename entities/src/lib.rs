//! SeaORM entities, one file per table. The same entities serve PostgreSQL
//! (where the connection's search_path selects the schema) and SQLite.

#![forbid(unsafe_code)]

pub mod account;
pub mod listing;
pub mod message_thread;
pub mod reservation;
pub mod webhook_event;

pub mod prelude {
    pub use super::account::Entity as Account;
    pub use super::listing::Entity as Listing;
    pub use super::message_thread::Entity as MessageThread;
    pub use super::reservation::Entity as Reservation;
    pub use super::webhook_event::Entity as WebhookEvent;
}
