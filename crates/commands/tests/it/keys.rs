//! Tenants and API keys: creation, authentication, revocation and scopes.

use std::time::Duration;

use commands::keys::{
    self, Caller, KeyCache, KeyError, NewApiKey, Scope, Scopes, authenticate, create_api_key,
    create_tenant, revoke_api_key, tenant_exists,
};
use domain::TenantId;
use store::Store;

use crate::support::{both_backends, texts};

both_backends!(
    a_tenant_is_created_once,
    a_key_authenticates_as_its_tenant_with_its_scopes,
    a_key_for_an_unknown_tenant_is_refused,
    bad_keys_fail_each_with_their_own_error,
    a_revoked_key_stops_authenticating_at_once,
    a_kept_key_is_trusted_until_it_is_stale,
    the_store_never_holds_the_secret,
);

fn tenant(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

/// A tenant with one key of the given scopes.
async fn key_for(store: &Store, name: &str, scopes: &str) -> NewApiKey {
    let tenant = tenant(name);
    if !tenant_exists(store, &tenant).await.unwrap() {
        create_tenant(store, &tenant).await.unwrap();
    }
    create_api_key(store, &tenant, &Scopes::parse(scopes).unwrap(), "test")
        .await
        .unwrap()
}

#[track_caller]
fn check_err<T: std::fmt::Debug>(result: Result<T, KeyError>, code: &str) {
    match result {
        Err(error) => assert_eq!(error.code(), code, "{error}"),
        Ok(value) => panic!("expected {code}, got {value:?}"),
    }
}

async fn a_tenant_is_created_once(store: Store) {
    let acme = tenant("acme");
    assert!(!tenant_exists(&store, &acme).await.unwrap());
    create_tenant(&store, &acme).await.unwrap();
    assert!(tenant_exists(&store, &acme).await.unwrap());

    let again = create_tenant(&store, &acme).await;
    assert!(
        matches!(&again, Err(KeyError::TenantExists(t)) if t == &acme),
        "{again:?}"
    );
    check_err(again, "TENANT_EXISTS");
    assert!(!tenant_exists(&store, &tenant("acme-2")).await.unwrap());
}

async fn a_key_authenticates_as_its_tenant_with_its_scopes(store: Store) {
    let new = key_for(&store, "acme", "send,recall").await;
    assert!(
        new.key.starts_with(&format!("hk_{}_", new.key_id)),
        "{}",
        new.key
    );
    assert_eq!(new.key.len(), 3 + 12 + 1 + 32);

    let caller = authenticate(&store, &new.key).await.unwrap();
    assert_eq!(
        caller,
        Caller {
            tenant: tenant("acme"),
            key_id: new.key_id.clone(),
            scopes: Scopes::parse("send,recall").unwrap(),
        }
    );
    assert!(caller.allows(Scope::Send) && caller.allows(Scope::Recall));
    assert!(!caller.allows(Scope::Read) && !caller.allows(Scope::Admin));

    // A second key of the same tenant is a different key with its own scopes.
    let admin = key_for(&store, "acme", "admin").await;
    assert_ne!(admin.key_id, new.key_id);
    let caller = authenticate(&store, &admin.key).await.unwrap();
    assert!(Scope::ALL.into_iter().all(|scope| caller.allows(scope)));

    // Keys of other tenants stand for those tenants.
    let other = key_for(&store, "globex", "read").await;
    assert_eq!(
        authenticate(&store, &other.key).await.unwrap().tenant,
        tenant("globex")
    );
}

async fn a_key_for_an_unknown_tenant_is_refused(store: Store) {
    let nobody = tenant("nobody");
    let result = create_api_key(&store, &nobody, &Scope::Send.into(), "").await;
    check_err(result, "TENANT_NOT_FOUND");
    assert!(
        texts(&store, "SELECT key_id FROM api_keys")
            .await
            .is_empty()
    );
}

async fn bad_keys_fail_each_with_their_own_error(store: Store) {
    let new = key_for(&store, "acme", "send").await;

    // The right key id with a wrong secret.
    let mut wrong = new.key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    check_err(authenticate(&store, &wrong).await, "UNKNOWN_KEY");

    // A well-formed key whose id was never issued.
    let unknown = format!("hk_000000000000_{}", &new.key[16..]);
    check_err(authenticate(&store, &unknown).await, "UNKNOWN_KEY");

    for malformed in [
        "",
        "hk_",
        "hk__",
        "hk_abc_def",
        &new.key[..new.key.len() - 1],
        &format!("{}x", new.key),
        &format!("Bearer {}", new.key),
        &new.key.to_uppercase(),
        &new.key.replacen("hk_", "hx_", 1),
        &format!("hk_{}é_{}", &new.key[3..14], &new.key[16..]),
        "hk_ééééééééééé_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let result = authenticate(&store, malformed).await;
        assert!(
            matches!(result, Err(KeyError::MalformedKey)),
            "{malformed:?}: {result:?}"
        );
    }
}

async fn a_revoked_key_stops_authenticating_at_once(store: Store) {
    let new = key_for(&store, "acme", "send").await;
    let kept = key_for(&store, "acme", "send").await;
    authenticate(&store, &new.key).await.unwrap();

    revoke_api_key(&store, &new.key_id).await.unwrap();
    check_err(authenticate(&store, &new.key).await, "REVOKED_KEY");
    // Revoking again is harmless; the other key of the tenant still works.
    revoke_api_key(&store, &new.key_id).await.unwrap();
    authenticate(&store, &kept.key).await.unwrap();

    // Someone without the secret cannot learn that the key was revoked.
    let mut wrong = new.key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    check_err(authenticate(&store, &wrong).await, "UNKNOWN_KEY");

    check_err(revoke_api_key(&store, "nosuchkey").await, "KEY_NOT_FOUND");
}

async fn a_kept_key_is_trusted_until_it_is_stale(store: Store) {
    let new = key_for(&store, "acme", "send,read").await;
    let fresh = Duration::from_millis(400);
    let cache = KeyCache::new(fresh);
    let caller = cache.authenticate(&store, &new.key).await.unwrap();
    assert_eq!(caller, authenticate(&store, &new.key).await.unwrap());

    revoke_api_key(&store, &new.key_id).await.unwrap();
    check_err(authenticate(&store, &new.key).await, "REVOKED_KEY");
    // What the cache read is trusted while fresh, and the secret is still checked against it.
    assert_eq!(cache.authenticate(&store, &new.key).await.unwrap(), caller);
    let mut wrong = new.key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    check_err(cache.authenticate(&store, &wrong).await, "UNKNOWN_KEY");
    check_err(cache.authenticate(&store, "hk_x").await, "MALFORMED_KEY");
    let unknown = format!("hk_000000000000_{}", &new.key[16..]);
    check_err(cache.authenticate(&store, &unknown).await, "UNKNOWN_KEY");

    // Once stale, the key is read again and the revocation holds.
    tokio::time::sleep(fresh + Duration::from_millis(50)).await;
    check_err(cache.authenticate(&store, &new.key).await, "REVOKED_KEY");
    check_err(cache.authenticate(&store, &wrong).await, "UNKNOWN_KEY");

    // A cache that trusts nothing sees a revocation at once.
    let other = key_for(&store, "acme", "send").await;
    let at_once = KeyCache::new(Duration::ZERO);
    at_once.authenticate(&store, &other.key).await.unwrap();
    revoke_api_key(&store, &other.key_id).await.unwrap();
    check_err(
        at_once.authenticate(&store, &other.key).await,
        "REVOKED_KEY",
    );
}

async fn the_store_never_holds_the_secret(store: Store) {
    let new = key_for(&store, "acme", "send").await;
    let secret = &new.key[16..];
    assert_eq!(secret.len(), 32);

    let hashes = texts(&store, "SELECT secret_hash FROM api_keys").await;
    assert_eq!(hashes.len(), 1);
    assert_eq!(hashes[0].len(), 64, "{}", hashes[0]);
    assert!(
        hashes[0]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let everything = texts(
        &store,
        "SELECT key_id || '|' || tenant_id || '|' || secret_hash || '|' || scopes || '|' || label \
         FROM api_keys",
    )
    .await;
    assert!(!everything[0].contains(secret), "{}", everything[0]);
    assert_eq!(texts(&store, "SELECT scopes FROM api_keys").await, ["send"]);

    // Nor do the values a program might log.
    assert!(!format!("{new:?}").contains(secret));
    let errors = [
        authenticate(&store, &new.key.replace("hk_", "hk-")).await,
        authenticate(&store, &format!("hk_000000000000_{secret}")).await,
    ];
    for error in errors {
        let error = error.unwrap_err();
        assert!(!format!("{error} {error:?}").contains(secret), "{error:?}");
    }
}

#[test]
fn scopes_parse_as_a_comma_list_and_admin_implies_every_scope() {
    let scopes = Scopes::parse("send, recall").unwrap();
    assert!(scopes.contains(Scope::Send) && scopes.contains(Scope::Recall));
    assert!(!scopes.contains(Scope::Read) && !scopes.contains(Scope::Admin));
    assert_eq!(scopes.to_string(), "send,recall");
    // One order, whatever the input's, with duplicates folded.
    assert_eq!(
        Scopes::parse("admin,read,send,read").unwrap().to_string(),
        "send,read,admin"
    );
    assert_eq!(format!("{scopes:?}"), "Scopes(send,recall)");

    let admin = Scopes::parse("admin").unwrap();
    assert!(Scope::ALL.into_iter().all(|scope| admin.contains(scope)));
    assert_eq!(
        Scopes::from(Scope::Send).with(Scope::Read).to_string(),
        "send,read"
    );

    for scope in Scope::ALL {
        assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        assert_eq!(Scopes::parse(scope.as_str()).unwrap(), Scopes::from(scope));
    }
}

#[test]
fn unknown_or_empty_scopes_are_rejected_with_a_clear_error() {
    for (raw, message) in [
        ("", "no scopes given"),
        ("  ", "no scopes given"),
        ("send,,read", "empty scope"),
        ("send,", "empty scope"),
        ("send,write", "unknown scope \"write\""),
        ("Send", "unknown scope \"Send\""),
    ] {
        let error = Scopes::parse(raw).unwrap_err();
        assert_eq!(error.code(), "INVALID_SCOPES");
        assert!(error.to_string().contains(message), "{raw:?}: {error}");
    }
    let long = "x".repeat(10_000);
    let error = Scopes::parse(&long).unwrap_err().to_string();
    assert!(error.len() < 200, "{error}");
}

#[test]
fn error_codes_are_stable() {
    let acme = tenant("acme");
    for (error, code) in [
        (KeyError::TenantExists(acme.clone()), "TENANT_EXISTS"),
        (KeyError::TenantNotFound(acme), "TENANT_NOT_FOUND"),
        (KeyError::KeyNotFound("k".into()), "KEY_NOT_FOUND"),
        (KeyError::MalformedKey, "MALFORMED_KEY"),
        (KeyError::UnknownKey { key_id: "k".into() }, "UNKNOWN_KEY"),
        (KeyError::RevokedKey { key_id: "k".into() }, "REVOKED_KEY"),
        (KeyError::InvalidScopes("x".into()), "INVALID_SCOPES"),
        (keys::KeyError::from(sqlx::Error::PoolClosed), "STORE"),
    ] {
        assert_eq!(error.code(), code);
    }
}
