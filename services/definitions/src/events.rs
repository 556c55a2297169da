//! The names of events a workflow can be started by, in one place for the three parties
//! that must agree on them: validation (what an EVENT trigger may name), the execution
//! service's `emitEvent` (what a custom event may be called) and its event triggers (which
//! bus event a trigger's name stands for).
//!
//! A trigger names either one of the five [`PLATFORM_EVENTS`] or a custom event. Custom
//! names are parsed once into a [`CustomEventName`]; the rules keep them apart from the
//! platform's own kinds: no reserved prefix ([`RESERVED_PREFIXES`]), and on the bus they
//! travel as `custom.<name>` ([`CustomEventName::bus_kind`]), so a user can never emit
//! something a platform consumer would take for its own.

/// The platform events an EVENT trigger may name, as they travel on the bus.
pub const PLATFORM_EVENTS: [&str; 5] = [
    "execution.succeeded",
    "execution.failed",
    "workflow.published",
    "file.created",
    "member.joined",
];

/// Prefixes the platform keeps for its own events: no custom name starts with one.
pub const RESERVED_PREFIXES: [&str; 8] = [
    "execution.",
    "workflow.",
    "file.",
    "member.",
    "notification.",
    "user.",
    "workspace.",
    "custom.",
];

/// What a custom event's bus kind starts with.
pub const CUSTOM_PREFIX: &str = "custom.";

/// The longest custom event name.
pub const MAX_NAME_LEN: usize = 100;

/// Why a name is not a custom event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventNameError {
    #[error("an event name has 1 to {MAX_NAME_LEN} characters, this one has {0}")]
    Length(usize),
    #[error("`{0}` is not an event name: use lowercase letters, digits and `_` in segments separated by dots, such as `order.created`")]
    Shape(String),
    #[error("`{name}` starts with `{prefix}`, which the platform keeps for its own events")]
    Reserved { name: String, prefix: &'static str },
}

/// A custom event's name: 1 to 100 characters, lowercase `[a-z0-9_]` segments separated
/// by dots, not starting with a reserved prefix (`order.created`, `invoice_paid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomEventName(String);

impl CustomEventName {
    pub fn parse(name: &str) -> Result<CustomEventName, EventNameError> {
        let len = name.chars().count();
        if !(1..=MAX_NAME_LEN).contains(&len) {
            return Err(EventNameError::Length(len));
        }
        let well_formed = name.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        if !well_formed {
            return Err(EventNameError::Shape(name.chars().take(100).collect()));
        }
        if let Some(prefix) = RESERVED_PREFIXES.into_iter().find(|p| name.starts_with(p)) {
            return Err(EventNameError::Reserved {
                name: name.to_string(),
                prefix,
            });
        }
        Ok(CustomEventName(name.to_string()))
    }

    /// The name a custom event of `bus_kind` (`custom.<name>`) was emitted with.
    pub fn from_bus_kind(bus_kind: &str) -> Result<CustomEventName, EventNameError> {
        let name = bus_kind
            .strip_prefix(CUSTOM_PREFIX)
            .ok_or_else(|| EventNameError::Shape(bus_kind.chars().take(100).collect()))?;
        CustomEventName::parse(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The routing key it travels under on the bus: `custom.<name>`.
    pub fn bus_kind(&self) -> String {
        format!("{CUSTOM_PREFIX}{}", self.0)
    }
}

impl std::fmt::Display for CustomEventName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an EVENT trigger names: a platform event, or a custom one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerEvent {
    Platform(&'static str),
    Custom(CustomEventName),
}

impl TriggerEvent {
    pub fn parse(name: &str) -> Result<TriggerEvent, EventNameError> {
        match PLATFORM_EVENTS.into_iter().find(|p| *p == name) {
            Some(platform) => Ok(TriggerEvent::Platform(platform)),
            None => CustomEventName::parse(name).map(TriggerEvent::Custom),
        }
    }

    /// The event a bus event of `kind` stands for, as triggers name it; `None` for a kind
    /// no trigger can name.
    pub fn from_bus_kind(kind: &str) -> Option<TriggerEvent> {
        match PLATFORM_EVENTS.into_iter().find(|p| *p == kind) {
            Some(platform) => Some(TriggerEvent::Platform(platform)),
            None => CustomEventName::from_bus_kind(kind)
                .ok()
                .map(TriggerEvent::Custom),
        }
    }

    /// The name as a trigger spells it (`execution.failed`, `order.created`).
    pub fn name(&self) -> &str {
        match self {
            TriggerEvent::Platform(p) => p,
            TriggerEvent::Custom(c) => c.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_names() {
        for good in [
            "order.created",
            "invoice_paid",
            "a",
            "v2.order.shipped_late",
            "executions.x",
        ] {
            assert_eq!(CustomEventName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(
            CustomEventName::parse(&"a".repeat(100)).map(|n| n.0.len()),
            Ok(100)
        );
        assert_eq!(
            CustomEventName::parse(&"a".repeat(101)),
            Err(EventNameError::Length(101))
        );
        assert_eq!(CustomEventName::parse(""), Err(EventNameError::Length(0)));
        for bad in [
            "Order.created",
            "order..created",
            ".order",
            "order.",
            "order-created",
            "order created",
            "ordér",
        ] {
            assert!(
                matches!(CustomEventName::parse(bad), Err(EventNameError::Shape(_))),
                "{bad}"
            );
        }
        for (bad, prefix) in [
            ("execution.failed", "execution."),
            ("workflow.anything", "workflow."),
            ("file.created", "file."),
            ("member.joined", "member."),
            ("notification.sent", "notification."),
            ("user.deleted", "user."),
            ("workspace.x", "workspace."),
            ("custom.order", "custom."),
        ] {
            assert_eq!(
                CustomEventName::parse(bad),
                Err(EventNameError::Reserved {
                    name: bad.into(),
                    prefix
                })
            );
        }
    }

    #[test]
    fn trigger_events_are_the_five_platform_events_or_custom_names() {
        for p in PLATFORM_EVENTS {
            assert_eq!(TriggerEvent::parse(p), Ok(TriggerEvent::Platform(p)));
        }
        assert!(matches!(
            TriggerEvent::parse("order.created"),
            Ok(TriggerEvent::Custom(_))
        ));
        for bad in [
            "execution.cancelled",
            "user.deleted",
            "custom.order.created",
            "Execution Failed",
        ] {
            assert!(TriggerEvent::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bus_kinds() {
        let name = CustomEventName::parse("order.created").unwrap();
        assert_eq!(name.bus_kind(), "custom.order.created");
        assert_eq!(
            TriggerEvent::from_bus_kind("custom.order.created").map(|e| e.name().to_string()),
            Some("order.created".into())
        );
        assert_eq!(
            TriggerEvent::from_bus_kind("execution.failed"),
            Some(TriggerEvent::Platform("execution.failed"))
        );
        for none in [
            "custom",
            "custom.",
            "custom.execution.failed",
            "execution.cancelled",
        ] {
            assert_eq!(TriggerEvent::from_bus_kind(none), None, "{none}");
        }
    }
}
