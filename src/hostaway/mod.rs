//! Everything about talking to Hostaway: the API client, tokens, rate limits,
//! and the payload types.

pub mod decode;
