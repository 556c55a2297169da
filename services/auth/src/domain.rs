//! The auth service's domain: users, workspaces and memberships, and the rules
//! their inputs obey. No I/O here; inputs are parsed into types that can only
//! hold valid values, so the store and the API never re-check them.

use std::marker::PhantomData;

use flowfleet_runtime::error::ApiError;
use flowfleet_security::identity::Role;
use uuid::Uuid;

/// A normalised (trimmed, lower-case) e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, ApiError> {
        let s = raw.trim().to_lowercase();
        let valid = s.len() <= 254
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(char::is_whitespace)
                    && s.matches('@').count() == 1
            });
        if valid {
            Ok(Email(s))
        } else {
            Err(ApiError::bad_input(format!(
                "`{}` is not an e-mail address",
                raw.chars().take(100).collect::<String>()
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy: 8 to 128 characters.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Password, ApiError> {
        let n = raw.chars().count();
        if n < 8 {
            return Err(ApiError::bad_input(
                "the password is too short: use at least 8 characters",
            ));
        }
        if n > 128 {
            return Err(ApiError::bad_input(
                "the password is too long: use at most 128 characters",
            ));
        }
        Ok(Password(raw.to_string()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name (of a user or a workspace): 1 to 100 characters, trimmed.
#[derive(Debug, Clone)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, raw: &str) -> Result<Name, ApiError> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > 100 {
            return Err(ApiError::bad_input(format!(
                "`{field}` must be 1 to 100 characters"
            )));
        }
        Ok(Name(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A bearer secret of kind `K` as its holder has it: `K::PREFIX` and 256 random bits
/// (base64url). Only its SHA-256 is ever stored, and anything not shaped like one is refused
/// without a lookup.
pub struct Secret<K: SecretKind>(String, PhantomData<K>);

/// What tells one kind of secret from another.
pub trait SecretKind {
    const PREFIX: &'static str;
    /// The error for a presented value that is not a secret of this kind.
    fn invalid() -> ApiError;
}

/// Refresh tokens (`rt_`): exchanged for new tokens, once each.
pub enum Refresh {}
impl SecretKind for Refresh {
    const PREFIX: &'static str = "rt_";
    fn invalid() -> ApiError {
        ApiError::unauthenticated("this refresh token is not valid; sign in again")
    }
}

/// Invitation tokens (`inv_`): accepted once by the invited address.
pub enum Invite {}
impl SecretKind for Invite {
    const PREFIX: &'static str = "inv_";
    fn invalid() -> ApiError {
        ApiError::not_found("this invitation does not exist; ask for a new one")
    }
}

/// API keys (`ffk_`): a workspace's integrations' bearer credential.
pub enum Key {}
impl SecretKind for Key {
    const PREFIX: &'static str = flowfleet_security::identity::API_KEY_PREFIX;
    fn invalid() -> ApiError {
        flowfleet_security::identity::invalid_api_key()
    }
}

pub type RefreshToken = Secret<Refresh>;
pub type InvitationToken = Secret<Invite>;
pub type ApiKeySecret = Secret<Key>;

impl<K: SecretKind> Secret<K> {
    /// A new secret from `random` (32 bytes from a CSPRNG).
    pub fn from_random(random: [u8; 32]) -> Self {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        Secret(format!("{}{encoded}", K::PREFIX), PhantomData)
    }

    /// A presented secret: the prefix and 43 base64url characters, or `K::invalid()`.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let shaped = raw.strip_prefix(K::PREFIX).is_some_and(|rest| {
            rest.len() == 43
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if shaped {
            Ok(Secret(raw.to_string(), PhantomData))
        } else {
            Err(K::invalid())
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form: SHA-256, hex (the same as `flowfleet_security::identity::api_key_hash`).
    pub fn hash(&self) -> String {
        flowfleet_security::identity::api_key_hash(&self.0)
    }
}

impl ApiKeySecret {
    /// What people see in lists: enough to tell keys apart, too little to use.
    pub fn prefix(&self) -> String {
        self.0.chars().take(12).collect()
    }
}

/// A stored API key (never its secret).
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub workspace: Uuid,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_by: Uuid,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiKey {
    /// Whether the key may be used at `now`.
    pub fn usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// What the security audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum SecurityEventKind {
    SignedUp,
    SignedIn,
    SignInFailed,
    SignInLocked,
    RefreshTokenReused,
    PasswordChanged,
    WorkspaceCreated,
    MemberInvited,
    InvitationRevoked,
    MemberJoined,
    MemberRoleChanged,
    MemberRemoved,
    ApiKeyCreated,
    ApiKeyRevoked,
    MfaEnabled,
    MfaDisabled,
    RecoveryCodeUsed,
}

impl SecurityEventKind {
    const ALL: [SecurityEventKind; 17] = [
        SecurityEventKind::SignedUp,
        SecurityEventKind::SignedIn,
        SecurityEventKind::SignInFailed,
        SecurityEventKind::SignInLocked,
        SecurityEventKind::RefreshTokenReused,
        SecurityEventKind::PasswordChanged,
        SecurityEventKind::WorkspaceCreated,
        SecurityEventKind::MemberInvited,
        SecurityEventKind::InvitationRevoked,
        SecurityEventKind::MemberJoined,
        SecurityEventKind::MemberRoleChanged,
        SecurityEventKind::MemberRemoved,
        SecurityEventKind::ApiKeyCreated,
        SecurityEventKind::ApiKeyRevoked,
        SecurityEventKind::MfaEnabled,
        SecurityEventKind::MfaDisabled,
        SecurityEventKind::RecoveryCodeUsed,
    ];

    /// The stored name (the GraphQL enum value).
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityEventKind::SignedUp => "SIGNED_UP",
            SecurityEventKind::SignedIn => "SIGNED_IN",
            SecurityEventKind::SignInFailed => "SIGN_IN_FAILED",
            SecurityEventKind::SignInLocked => "SIGN_IN_LOCKED",
            SecurityEventKind::RefreshTokenReused => "REFRESH_TOKEN_REUSED",
            SecurityEventKind::PasswordChanged => "PASSWORD_CHANGED",
            SecurityEventKind::WorkspaceCreated => "WORKSPACE_CREATED",
            SecurityEventKind::MemberInvited => "MEMBER_INVITED",
            SecurityEventKind::InvitationRevoked => "INVITATION_REVOKED",
            SecurityEventKind::MemberJoined => "MEMBER_JOINED",
            SecurityEventKind::MemberRoleChanged => "MEMBER_ROLE_CHANGED",
            SecurityEventKind::MemberRemoved => "MEMBER_REMOVED",
            SecurityEventKind::ApiKeyCreated => "API_KEY_CREATED",
            SecurityEventKind::ApiKeyRevoked => "API_KEY_REVOKED",
            SecurityEventKind::MfaEnabled => "MFA_ENABLED",
            SecurityEventKind::MfaDisabled => "MFA_DISABLED",
            SecurityEventKind::RecoveryCodeUsed => "RECOVERY_CODE_USED",
        }
    }

    pub fn parse(s: &str) -> Option<SecurityEventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of the security audit log, before it is stored.
#[derive(Debug, Clone)]
pub struct SecurityEvent {
    pub kind: SecurityEventKind,
    /// Whom the event is about.
    pub user: Option<Uuid>,
    /// Who caused it (the user themself for sign-ins).
    pub actor: Option<Uuid>,
    pub workspace: Option<Uuid>,
    /// The client's address, when the request came through the gateway.
    pub ip: Option<String>,
    pub detail: serde_json::Value,
}

impl SecurityEvent {
    /// An event about an account, caused by its owner.
    pub fn account(kind: SecurityEventKind, user: Uuid) -> SecurityEvent {
        SecurityEvent {
            kind,
            user: Some(user),
            actor: Some(user),
            workspace: None,
            ip: None,
            detail: serde_json::json!({}),
        }
    }

    /// An event that changed `workspace`, caused by `actor`.
    pub fn workspace(
        kind: SecurityEventKind,
        workspace: Uuid,
        actor: Uuid,
        user: Option<Uuid>,
    ) -> SecurityEvent {
        SecurityEvent {
            kind,
            user,
            actor: Some(actor),
            workspace: Some(workspace),
            ip: None,
            detail: serde_json::json!({}),
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> SecurityEvent {
        self.detail = detail;
        self
    }

    pub fn with_ip(mut self, ip: Option<String>) -> SecurityEvent {
        self.ip = ip;
        self
    }
}

/// A stored audit entry.
#[derive(Debug, Clone)]
pub struct StoredSecurityEvent {
    pub id: Uuid,
    pub occurred_at: i64,
    pub event: SecurityEvent,
}

/// `what` (managing members, reading the audit log, ...) needs ADMIN or above.
fn require_admin(actor: Role, what: &str) -> Result<(), ApiError> {
    if actor < Role::Admin {
        return Err(ApiError::forbidden(format!(
            "your role in this workspace is {}; {what} needs ADMIN or above",
            actor.as_str()
        )));
    }
    Ok(())
}

/// Managing members (inviting, changing roles, removing) needs ADMIN or above.
fn may_manage(actor: Role) -> Result<(), ApiError> {
    require_admin(actor, "managing members")
}

/// Who may hand out a role: admins and owners, and never a role above their own (so only
/// owners make owners).
pub fn may_grant(actor: Role, role: Role) -> Result<(), ApiError> {
    may_manage(actor)?;
    if role > actor {
        return Err(ApiError::forbidden(format!(
            "only an {} can grant {}",
            role.as_str(),
            role.as_str()
        )));
    }
    Ok(())
}

/// Whether the actor outranks or equals a member enough to change or remove them.
fn may_touch(actor: Role, member: Role) -> Result<(), ApiError> {
    may_manage(actor)?;
    if member > actor {
        return Err(ApiError::forbidden(format!(
            "this member is {}; only an {} can change their role or remove them",
            member.as_str(),
            member.as_str()
        )));
    }
    Ok(())
}

/// Who may change a member's role from `current` to `new`.
pub fn may_change_role(actor: Role, current: Role, new: Role) -> Result<(), ApiError> {
    may_touch(actor, current)?;
    may_grant(actor, new)
}

/// Who may remove a member: the member themself (leaving), or a manager who outranks or
/// equals them.
pub fn may_remove(actor: Role, target: Role, leaving: bool) -> Result<(), ApiError> {
    if leaving {
        return Ok(());
    }
    may_touch(actor, target)
}

/// The workspace must keep an owner: a change that would leave it with none is refused.
pub fn keeps_an_owner(owners: i64, target: Role, new: Option<Role>) -> Result<(), ApiError> {
    let loses_owner = target == Role::Owner && new != Some(Role::Owner);
    if loses_owner && owners <= 1 {
        return Err(ApiError::conflict(
            "a workspace must keep an owner: make another member OWNER first",
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: Uuid,
    pub workspace: Uuid,
    pub email: String,
    pub role: Role,
    pub invited_by: Uuid,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A member of a workspace.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: User,
    pub role: Role,
    pub joined_at: i64,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub time_zone: TimeZone,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub time_zone: TimeZone,
    pub created_at: i64,
}

/// An IANA time zone name (`Europe/Paris`, `UTC`), checked against the tz database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone(String);

impl TimeZone {
    pub fn utc() -> TimeZone {
        TimeZone("UTC".into())
    }

    /// `field` names the input in the error.
    pub fn parse(field: &str, value: &str) -> Result<TimeZone, ApiError> {
        match value.parse::<chrono_tz::Tz>() {
            Ok(tz) => Ok(TimeZone(tz.name().to_string())),
            Err(_) => Err(ApiError::bad_input(format!(
                "`{field}` must be an IANA time zone such as `Europe/Paris` or `UTC`, got `{}`",
                value.chars().take(64).collect::<String>()
            ))
            .with_detail("path", serde_json::json!([field]))),
        }
    }

    /// A stored name (written by [`TimeZone::parse`]).
    pub fn stored(value: String) -> TimeZone {
        TimeZone(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct Membership {
    pub workspace: Workspace,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn refresh_tokens_round_trip_and_only_their_hash_is_kept() {
        let token = RefreshToken::from_random([7; 32]);
        let parsed = RefreshToken::parse(token.expose()).expect("a valid token");
        assert_eq!(parsed.hash(), token.hash());
        assert_eq!(token.hash().len(), 64);
        assert!(!token.hash().contains(&token.expose()[3..]));
        assert_ne!(RefreshToken::from_random([8; 32]).hash(), token.hash());
        for bad in [
            "",
            "rt_",
            "rt_short",
            "xx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(RefreshToken::parse(bad).is_err(), "{bad} accepted");
        }
        let spaced = format!("{} ", token.expose());
        assert!(RefreshToken::parse(&spaced).is_err());
    }

    #[test]
    fn member_management_rules() {
        use Role::*;
        // Managing needs ADMIN or above.
        assert!(may_grant(Editor, Viewer).is_err());
        assert!(may_grant(Admin, Editor).is_ok());
        // Nobody grants above their own role.
        assert!(may_grant(Admin, Owner).is_err());
        assert!(may_grant(Owner, Owner).is_ok());
        // Admins cannot touch owners, owners can.
        assert!(may_change_role(Admin, Owner, Viewer).is_err());
        assert!(may_change_role(Owner, Owner, Admin).is_ok());
        assert!(may_change_role(Admin, Admin, Viewer).is_ok());
        assert!(may_remove(Admin, Owner, false).is_err());
        assert!(may_remove(Viewer, Editor, false).is_err());
        assert!(may_remove(Admin, Editor, false).is_ok());
        // Anyone may leave.
        assert!(may_remove(Viewer, Viewer, true).is_ok());
        // The last owner stays.
        assert!(keeps_an_owner(1, Owner, Some(Admin)).is_err());
        assert!(keeps_an_owner(1, Owner, None).is_err());
        assert!(keeps_an_owner(2, Owner, None).is_ok());
        assert!(keeps_an_owner(1, Admin, None).is_ok());
        assert!(keeps_an_owner(1, Owner, Some(Owner)).is_ok());
    }

    #[test]
    fn security_event_kinds_round_trip() {
        for kind in SecurityEventKind::ALL {
            assert_eq!(SecurityEventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SecurityEventKind::parse("NOPE"), None);
    }

    #[test]
    fn api_keys_are_shaped_hashed_and_expire() {
        let key = ApiKeySecret::from_random([9; 32]);
        assert!(key.expose().starts_with("ffk_"));
        assert_eq!(
            ApiKeySecret::parse(key.expose()).unwrap().hash(),
            key.hash()
        );
        assert_eq!(key.prefix().len(), 12);
        assert!(ApiKeySecret::parse("ffk_short").is_err());
        assert!(ApiKeySecret::parse(&key.expose().replace("ffk_", "rt_")).is_err());
        let stored = ApiKey {
            id: Uuid::nil(),
            workspace: Uuid::nil(),
            name: "ci".into(),
            role: Role::Editor,
            prefix: key.prefix(),
            created_by: Uuid::nil(),
            created_at: 0,
            expires_at: Some(100),
            last_used_at: None,
            revoked_at: None,
        };
        assert!(stored.usable(99));
        assert!(!stored.usable(100));
        assert!(!ApiKey {
            revoked_at: Some(5),
            expires_at: None,
            ..stored.clone()
        }
        .usable(6));
    }

    #[test]
    fn password_policy() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("long enough").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
    }
}
