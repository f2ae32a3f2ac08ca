//! What a client asks the serving engine for and what it gets back. The types live in
//! `llmopt-api`, shared with the server and the gateway; this module keeps their engine paths.

pub use llmopt_api::request::*;
