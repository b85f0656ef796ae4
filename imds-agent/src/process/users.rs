//! uid → user name.

use std::collections::HashMap;

use nix::unistd::{Uid, User};

/// Most uids remembered; the cache starts over past this.
const MAX_CACHED_USERS: usize = 4_096;

/// Looks up user names through the system's user database (`getpwuid_r`, so NSS sources
/// such as LDAP or SSSD work too), remembering answers, including "no such user".
#[derive(Debug, Default)]
pub struct UserNames {
    names: HashMap<u32, Option<String>>,
}

impl UserNames {
    pub fn new() -> Self {
        Self::default()
    }

    /// The name of `uid`, or `None` if the user database has no entry for it. A failed
    /// lookup (as opposed to a missing user) is not remembered, so it is tried again.
    pub fn name(&mut self, uid: u32) -> Option<String> {
        if let Some(name) = self.names.get(&uid) {
            return name.clone();
        }
        let name = match User::from_uid(Uid::from_raw(uid)) {
            Ok(user) => user.map(|user| user.name),
            Err(error) => {
                tracing::debug!(uid, %error, "user lookup failed");
                return None;
            }
        };
        if self.names.len() >= MAX_CACHED_USERS {
            self.names.clear();
        }
        self.names.insert(uid, name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root() {
        let mut users = UserNames::new();
        assert_eq!(users.name(0).as_deref(), Some("root"));
        assert_eq!(users.name(0).as_deref(), Some("root"));
    }

    #[test]
    fn missing_user_is_remembered() {
        let mut users = UserNames::new();
        // Far above any uid a system hands out, and not (uid_t)-1.
        let uid = 3_999_999_999;
        assert_eq!(users.name(uid), None);
        assert_eq!(users.names.get(&uid), Some(&None));
        assert_eq!(users.name(uid), None);
    }
}
