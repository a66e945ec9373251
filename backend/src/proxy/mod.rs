//! The proxies between browsers and sessions: nobody reaches a session directly; daas
//! checks the login and the membership and relays every byte.

pub mod db;
pub mod desktop;
pub mod jupyter;
pub mod notebook;
pub mod rfb;
pub mod upstream;
pub mod webapp;
pub mod ws;
