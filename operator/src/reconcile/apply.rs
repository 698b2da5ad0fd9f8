//! Server-side apply that writes only when the desired object changed: the
//! sha256 of what was applied is kept in an annotation on the child, so a
//! steady state costs one GET per child and zero writes, whatever defaults
//! the API server added. Drift by another writer of a field we own is undone
//! on the next change of the desired state (SSA with force takes it back).

use std::fmt::Debug;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::render::{sha256_hex, ANNOTATION_APPLIED, FIELD_MANAGER};
use crate::Error;

/// What [`apply`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied<K> {
    /// The child did not exist and was created.
    Created(K),
    /// The child existed with other content and was patched.
    Updated(K),
    /// The child already matched; nothing was written.
    Unchanged(K),
}

impl<K> Applied<K> {
    /// The object as the API server has it now.
    pub fn object(&self) -> &K {
        match self {
            Applied::Created(k) | Applied::Updated(k) | Applied::Unchanged(k) => k,
        }
    }

    /// Whether a write happened.
    pub fn wrote(&self) -> bool {
        !matches!(self, Applied::Unchanged(_))
    }
}

/// Apply parameters: the one field manager, forcing ownership of conflicting fields.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// sha256 of the desired object's JSON (deterministic: k8s-openapi fields
/// serialize in a fixed order and maps are BTreeMaps).
pub fn desired_hash<K: Serialize>(desired: &K) -> Result<String, Error> {
    Ok(sha256_hex(&serde_json::to_vec(desired)?))
}

/// Applies `desired` unless the live child already carries its hash.
pub async fn apply<K>(api: &Api<K>, desired: &K) -> Result<Applied<K>, Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    let hash = desired_hash(desired)?;
    let existing = api.get_opt(&name).await?;
    if let Some(live) = existing.as_ref() {
        if live.annotations().get(ANNOTATION_APPLIED) == Some(&hash) {
            return Ok(Applied::Unchanged(live.clone()));
        }
    }
    let mut body = desired.clone();
    body.annotations_mut()
        .insert(ANNOTATION_APPLIED.into(), hash);
    let out = api
        .patch(&name, &apply_params(), &Patch::Apply(&body))
        .await?;
    Ok(match existing {
        Some(_) => Applied::Updated(out),
        None => Applied::Created(out),
    })
}

/// Deletes child `name` if it exists and `owner_uid` controls it (a budget
/// no longer wanted at one replica). Returns whether it deleted.
pub async fn delete_owned<K>(api: &Api<K>, name: &str, owner_uid: &str) -> Result<bool, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let Some(live) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let owned = live
        .owner_references()
        .iter()
        .any(|o| o.uid == owner_uid && o.controller == Some(true));
    if !owned {
        return Ok(false);
    }
    api.delete(name, &DeleteParams::default()).await?;
    Ok(true)
}

/// Creates the Secret `name` from `make()` unless one of that name exists;
/// never overwrites it, so a rotated keyring survives. Returns whether it created.
pub async fn create_if_absent(
    api: &Api<Secret>,
    name: &str,
    make: impl FnOnce() -> Result<Secret, Error>,
) -> Result<bool, Error> {
    if api.get_opt(name).await?.is_some() {
        return Ok(false);
    }
    let secret = &make()?;
    let params = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    match api.create(&params, secret).await {
        Ok(_) => Ok(true),
        // Another reconcile (of a sibling service) created it first.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
