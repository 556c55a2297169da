//! What the notification service does when something happens elsewhere in the fleet.

pub mod events;
