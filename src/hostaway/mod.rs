//! Everything about talking to Hostaway: the API client, tokens, rate limits,
//! and the payload types.

pub mod client;
pub mod decode;
pub mod error;
pub mod paging;
pub mod ratelimit;
pub mod tokens;
mod transport;
pub mod types;
mod walks;
pub mod webhook;

pub use client::{AccountClient, Credentials, HostawayClient, endpoints};
pub use error::HostawayError;
