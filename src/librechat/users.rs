//! The `users` collection, written exactly as LibreChat's `registerUser`/`createUser` would.

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::batch::Id;
use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::{collections, Store};

/// The account as declared, already validated and normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredUser {
    /// Trimmed and lower-cased.
    pub email: String,
    /// `None`: not declared; set once at creation from the email, then left to LibreChat.
    pub name: Option<String>,
    /// `None`: not declared; LibreChat's own empty value at creation, then left alone.
    pub username: Option<String>,
    /// `None` for these three: LibreChat's default (`USER`, `local`, verified) at creation,
    /// then left to LibreChat (an SSO role sync, say).
    pub role: Option<String>,
    pub provider: Option<String>,
    pub email_verified: Option<bool>,
    /// Whether LibreChat's expiry of an unverified account (`expiresAt`, its TTL) goes: only
    /// for an account its declarer manages fully. An account only adopted keeps it, even when
    /// its name is written (LibreChat's own `updateUser` would clear it, but the declarer did
    /// not create the account and may not make someone's registration permanent).
    pub keeps_account: bool,
}

impl DesiredUser {
    fn provider_or_default(&self) -> &str {
        self.provider.as_deref().unwrap_or("local")
    }
}

/// The fields of a stored account that the operator manages or needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredUser {
    pub id: ObjectId,
    pub email: String,
    pub name: Option<String>,
    pub username: Option<String>,
    pub role: Option<String>,
    pub provider: Option<String>,
    pub email_verified: bool,
    pub password_hash: Option<String>,
    pub id_on_the_source: Option<String>,
    /// LibreChat's unverified-user TTL; a managed account must never carry it.
    pub has_expiry: bool,
    /// Whether the account accepted the terms of service, and when (LibreChat v0.8.8+).
    pub terms_accepted: bool,
    pub terms_accepted_at: Option<DateTime>,
}

/// Whether creating found the account already there (somebody won a race, or LibreChat
/// registered it since we looked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    Inserted(ObjectId),
    AlreadyThere(ObjectId),
}

impl Created {
    pub fn id(self) -> ObjectId {
        match self {
            Created::Inserted(id) | Created::AlreadyThere(id) => id,
        }
    }
}

/// One managed field that differed from the declaration and was put back.
pub type FieldName = &'static str;

impl Store {
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<StoredUser>, StoreError> {
        self.find_user(doc! { "email": email }).await
    }

    pub async fn find_user_by_id(&self, id: ObjectId) -> Result<Option<StoredUser>, StoreError> {
        let found = self.reads.users.get(Id::Object(id)).await?;
        Ok(found.and_then(|d| stored_user_from_doc(&d)))
    }

    /// The account a group's `memberIds` value names: its `_id` in hex, or its `idOnTheSource`.
    pub async fn find_user_by_member_id(
        &self,
        member: &str,
    ) -> Result<Option<StoredUser>, StoreError> {
        if let Ok(id) = ObjectId::parse_str(member) {
            if let Some(found) = self.find_user_by_id(id).await? {
                return Ok(Some(found));
            }
        }
        // An identity provider's id may look like an ObjectId too.
        self.find_user(doc! { "idOnTheSource": member }).await
    }

    async fn find_user(&self, filter: Document) -> Result<Option<StoredUser>, StoreError> {
        let found = self
            .collection(collections::USERS)
            .find_one(filter)
            .deadline("reading a user")
            .await?;
        Ok(found.and_then(|d| stored_user_from_doc(&d)))
    }

    /// Creates the account by an upsert on the unique email, so that a retry or a crash can
    /// never produce two. `$setOnInsert` leaves an existing account untouched.
    pub async fn create_user(
        &self,
        id: ObjectId,
        desired: &DesiredUser,
        password_hash: Option<String>,
    ) -> Result<Created, StoreError> {
        let document = new_user_document(id, desired, password_hash);
        let users = self.collection(collections::USERS);
        let result = users
            .update_one(
                doc! { "email": &desired.email },
                doc! { "$setOnInsert": document },
            )
            .upsert(true)
            .deadline("creating a user")
            .await;
        let result = match result {
            Ok(r) => r,
            // Two upserts racing on a unique index: the loser sees a duplicate key; the account exists.
            Err(err) => {
                if !err.is_duplicate_key() {
                    return Err(err);
                }
                return self
                    .existing_id(&desired.email, err)
                    .await
                    .map(Created::AlreadyThere);
            }
        };
        match result.upserted_id.and_then(|id| id.as_object_id()) {
            Some(id) => Ok(Created::Inserted(id)),
            None => self
                .existing_id(
                    &desired.email,
                    StoreError::EmailTaken(desired.email.clone()),
                )
                .await
                .map(Created::AlreadyThere),
        }
    }

    async fn existing_id(
        &self,
        email: &str,
        otherwise: StoreError,
    ) -> Result<ObjectId, StoreError> {
        self.find_user_by_email(email)
            .await?
            .map(|u| u.id)
            .ok_or(otherwise)
    }

    /// Puts every managed field back to its declared value. Returns the fields that differed;
    /// an account that already matches costs no write.
    pub async fn correct_user(
        &self,
        stored: &StoredUser,
        desired: &DesiredUser,
    ) -> Result<Vec<FieldName>, StoreError> {
        let (set, changed) = differences(stored, desired);
        if changed.is_empty() {
            return Ok(changed);
        }
        let mut update = doc! { "$set": set };
        let mut unset = Document::new();
        if stored.has_expiry && desired.keeps_account {
            unset.insert("expiresAt", "");
        }
        if leaves_local_sign_in(stored, desired) {
            // LibreChat's local strategy checks no provider: a password left on an account
            // moved onto an identity provider would still log in.
            unset.insert("password", "");
        }
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        self.collection(collections::USERS)
            .update_one(doc! { "_id": stored.id }, update)
            .deadline("updating a user")
            .await
            .map_err(|err| {
                if err.is_duplicate_key() {
                    StoreError::EmailTaken(desired.email.clone())
                } else {
                    err
                }
            })?;
        Ok(changed)
    }

    /// Drops LibreChat's Redis caches of the user (a no-op without Redis).
    pub async fn drop_user_caches(&self, stored: &StoredUser) -> Result<(), StoreError> {
        if let Some(redis) = self.redis()? {
            redis
                .invalidate_user(&stored.id.to_hex(), stored.id_on_the_source.as_deref())
                .await?;
        }
        Ok(())
    }

    /// Replaces the password hash.
    pub async fn set_password_hash(&self, id: ObjectId, hash: &str) -> Result<(), StoreError> {
        self.collection(collections::USERS)
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "password": hash, "updatedAt": DateTime::now() } },
            )
            .deadline("setting a password")
            .await
            .map(|_| ())
    }

    /// Every account, oldest first (for `librechat-operator export`).
    pub async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        let docs: Vec<Document> = self
            .collection(collections::USERS)
            .find(doc! {})
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .drain("listing users")
            .await?;
        Ok(docs.iter().filter_map(stored_user_from_doc).collect())
    }

    pub async fn count_users(&self, filter: Document) -> Result<u64, StoreError> {
        self.collection(collections::USERS)
            .count_documents(filter)
            .deadline("counting users")
            .await
    }
}

/// The managed fields in which `stored` differs from the declaration (nothing is written).
/// Whether correcting `stored` to `desired` moves an account that has a password onto an
/// identity provider: the password goes with the correction, and its sessions must end.
pub fn leaves_local_sign_in(stored: &StoredUser, desired: &DesiredUser) -> bool {
    let moves_to_sso = desired
        .provider
        .as_deref()
        .is_some_and(|p| p != "local" && stored.provider.as_deref() != Some(p));
    moves_to_sso && stored.password_hash.is_some()
}

pub fn drift(stored: &StoredUser, desired: &DesiredUser) -> Vec<FieldName> {
    differences(stored, desired).1
}

/// The fields that differ from the declaration, as a `$set` document and their names.
fn differences(stored: &StoredUser, desired: &DesiredUser) -> (Document, Vec<FieldName>) {
    let mut set = Document::new();
    let mut changed = Vec::new();
    let mut put = |field: FieldName, value: Bson| {
        set.insert(field, value);
        changed.push(field);
    };
    if stored.email != desired.email {
        put("email", desired.email.clone().into());
    }
    if let Some(name) = &desired.name {
        if stored.name.as_deref() != Some(name.as_str()) {
            put("name", name.clone().into());
        }
    }
    if let Some(username) = &desired.username {
        let username = username.to_lowercase();
        if stored.username.as_deref() != Some(username.as_str()) {
            put("username", username.into());
        }
    }
    if let Some(role) = &desired.role {
        if stored.role.as_deref() != Some(role.as_str()) {
            put("role", role.clone().into());
        }
    }
    if let Some(provider) = &desired.provider {
        if stored.provider.as_deref() != Some(provider.as_str()) {
            put("provider", provider.clone().into());
        }
    }
    // Declared `false` means "not verified yet": the person verifying through LibreChat is
    // LibreChat's decision, never undone. Declared `true` is kept.
    if desired.email_verified == Some(true) && !stored.email_verified {
        put("emailVerified", true.into());
    }
    if stored.has_expiry && desired.keeps_account {
        changed.push("expiresAt");
    }
    if !changed.is_empty() {
        set.insert("updatedAt", DateTime::now());
    }
    (set, changed)
}

/// The document mongoose would insert for `registerUser` with schema defaults applied
/// (fixture `users.local.json`), minus what LibreChat's verification later removes.
pub fn new_user_document(
    id: ObjectId,
    desired: &DesiredUser,
    password_hash: Option<String>,
) -> Document {
    let now = DateTime::now();
    let local = desired.provider_or_default() == "local";
    let default_name = desired
        .email
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    // registerUser turns an empty username into null; SSO sign-ups keep the schema default "".
    let username = match (&desired.username, local) {
        (Some(u), _) => Bson::String(u.to_lowercase()),
        (None, true) => Bson::Null,
        (None, false) => Bson::String(String::new()),
    };
    let mut d = doc! {
        "_id": id,
        "name": desired.name.clone().unwrap_or(default_name),
        "username": username,
        "email": &desired.email,
        "emailVerified": desired.email_verified.unwrap_or(true),
    };
    if let Some(hash) = password_hash {
        d.insert("password", hash);
    }
    if local {
        // registerUser writes an explicit null avatar; SSO pre-provisioning leaves it unset.
        d.insert("avatar", Bson::Null);
    }
    d.extend(doc! {
        "provider": desired.provider_or_default(),
        "role": desired.role.as_deref().unwrap_or("USER"),
        "plugins": [],
        "twoFactorEnabled": false,
        "termsAccepted": false,
        "termsAcceptedAt": Bson::Null,
        "personalization": { "memories": true, "statefulCodeEnvironment": "user", "_id": ObjectId::new() },
        "pinnedOrder": [],
        "backupCodes": [],
        "refreshToken": [],
        "favorites": [],
        "skillStates": {},
        "createdAt": now,
        "updatedAt": now,
        "__v": 0_i32,
    });
    d
}

/// The account as [`Store::create_user`] just inserted it.
pub fn as_created(
    id: ObjectId,
    desired: &DesiredUser,
    password_hash: Option<String>,
) -> StoredUser {
    stored_user_from_doc(&new_user_document(id, desired, password_hash))
        .unwrap_or_else(|| unreachable!("a new user document always has its _id"))
}

fn stored_user_from_doc(d: &Document) -> Option<StoredUser> {
    let text = |k: &str| d.get_str(k).ok().map(str::to_string);
    Some(StoredUser {
        id: d.get_object_id("_id").ok()?,
        email: text("email").unwrap_or_default(),
        name: text("name"),
        username: text("username"),
        role: text("role"),
        provider: text("provider"),
        email_verified: d.get_bool("emailVerified").unwrap_or(false),
        password_hash: text("password"),
        id_on_the_source: text("idOnTheSource"),
        has_expiry: matches!(d.get("expiresAt"), Some(v) if *v != Bson::Null),
        terms_accepted: d.get_bool("termsAccepted").unwrap_or(false),
        terms_accepted_at: d.get_datetime("termsAcceptedAt").ok().copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(provider: &str) -> DesiredUser {
        DesiredUser {
            email: "jane.doe@example.com".into(),
            name: Some("Jane Doe".into()),
            username: Some("JaneD".into()),
            role: Some("USER".into()),
            provider: Some(provider.into()),
            email_verified: Some(true),
            keeps_account: true,
        }
    }

    #[test]
    fn only_a_move_of_an_account_with_a_password_onto_sso_leaves_local_sign_in() {
        let local = as_created(ObjectId::new(), &desired("local"), Some("$2a$10$x".into()));
        assert!(leaves_local_sign_in(&local, &desired("openid")));
        assert!(!leaves_local_sign_in(&local, &desired("local")));
        let no_password = as_created(ObjectId::new(), &desired("local"), None);
        assert!(!leaves_local_sign_in(&no_password, &desired("openid")));
        // Already on the provider: a password found there is not the operator's to remove.
        let sso = StoredUser {
            password_hash: Some("$2a$10$x".into()),
            ..as_created(ObjectId::new(), &desired("openid"), None)
        };
        assert!(!leaves_local_sign_in(&sso, &desired("openid")));
    }

    #[test]
    fn local_user_matches_librechat_shape() {
        let d = new_user_document(ObjectId::new(), &desired("local"), Some("$2b$10$x".into()));
        assert_eq!(d.get_str("username").unwrap(), "janed");
        assert_eq!(d.get("avatar"), Some(&Bson::Null));
        assert_eq!(d.get_i32("__v").unwrap(), 0);
        assert!(d
            .get_document("personalization")
            .unwrap()
            .get_object_id("_id")
            .is_ok());
        for absent in ["tenantId", "expiresAt", "googleId", "openidId"] {
            assert!(!d.contains_key(absent), "{absent} must not be written");
        }
    }

    #[test]
    fn sso_user_has_no_password_and_no_avatar() {
        let mut want = desired("openid");
        want.username = None;
        let d = new_user_document(ObjectId::new(), &want, None);
        assert!(!d.contains_key("password"));
        assert!(!d.contains_key("avatar"));
        assert_eq!(d.get_str("username").unwrap(), "");
        assert_eq!(d.get_str("provider").unwrap(), "openid");
    }

    #[test]
    fn matching_account_needs_no_write() {
        let want = desired("local");
        let stored =
            stored_user_from_doc(&new_user_document(ObjectId::new(), &want, None)).unwrap();
        let (_, changed) = differences(&stored, &want);
        assert!(changed.is_empty(), "{changed:?}");
    }

    #[test]
    fn drift_is_detected_field_by_field() {
        let want = desired("local");
        let mut stored =
            stored_user_from_doc(&new_user_document(ObjectId::new(), &want, None)).unwrap();
        stored.role = Some("ADMIN".into());
        stored.email_verified = false;
        stored.has_expiry = true;
        let (set, changed) = differences(&stored, &want);
        assert_eq!(changed, vec!["role", "emailVerified", "expiresAt"]);
        assert_eq!(set.get_str("role").unwrap(), "USER");
    }

    #[test]
    fn librechats_expiry_of_an_account_only_adopted_stays() {
        let adopted = DesiredUser {
            keeps_account: false,
            ..desired("local")
        };
        let mut stored =
            stored_user_from_doc(&new_user_document(ObjectId::new(), &adopted, None)).unwrap();
        stored.has_expiry = true;
        assert!(differences(&stored, &adopted).1.is_empty());
        stored.name = Some("Someone Else".into());
        assert_eq!(differences(&stored, &adopted).1, vec!["name"]);
    }
}
