//! The front ends: thin adapters from a platform's messages to [`crate::app::App::handle`] and from its
//! [`crate::reply::Reply`] back to the platform. No business logic here.

pub mod discord;
pub mod telegram;
pub mod web;
