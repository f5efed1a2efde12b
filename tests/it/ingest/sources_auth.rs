//! Authenticated registries: htpasswd Basic auth over TLS with a test CA (`--ca`) and
//! credentials from a Docker config.json; the bearer-token flow against the registry's own
//! `auth: token:` (JWTs signed by a token service written here, verified by the registry
//! against the service's certificate).

use std::process::Command;

use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};

use super::fixtures::*;
use super::sources::{amd64, read_layers};

#[test]
fn ingest_basic_auth_over_tls_with_ca_and_docker_config() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    three_layers(&layout, "v1");
    let ca = TestCa::new();
    let htpasswd = tmp.path().join("htpasswd");
    run(Command::new("htpasswd")
        .args(["-Bbc"])
        .arg(&htpasswd)
        .args(["puller", "s3cret"]));
    let reg = Registry::start(RegistryAuth::Htpasswd(&htpasswd, &ca.cert, &ca.key));
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", reg.addr()),
        &["--dest-creds", "puller:s3cret"],
    );
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.addr(),
            b64(b"puller:s3cret")
        ),
    )
    .unwrap();
    let reference = format!("{}/team/app:v1", reg.addr());

    let mut o = options();
    o.ca_files = vec![ca.ca.clone()];
    o.docker_config = Some(config.clone());
    let src = open(&reference, &o);
    let img = src.resolve(&amd64()).unwrap();
    assert_eq!(img.layers.len(), 3);
    read_layers(&*src, &img);
    let tags = src.tags().unwrap();
    assert_eq!(tags, ["v1"]);

    // Without the CA the certificate is not trusted.
    let mut no_ca = o.clone();
    no_ca.ca_files.clear();
    let e = open(&reference, &no_ca)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(&e, &[&reference, "TLS", "manifests/v1", "certificate"]);
    // Without credentials, the registry's Basic challenge cannot be answered.
    let mut anonymous = o.clone();
    anonymous.docker_config = None;
    let e = open(&reference, &anonymous)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(&e, &[&reference, "credentials", "Basic", &reg.addr()]);
    // Wrong credentials (--creds wins over the config) are refused with the registry's code.
    let mut wrong = o.clone();
    wrong.creds = Some(("puller".into(), "wrong".into()));
    let e = open(&reference, &wrong)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(&e, &[&reference, "HTTP 401", "UNAUTHORIZED"]);
}

/// A JWT (RS256, the certificate in `x5c`) granting the scopes asked for, as Docker's
/// token spec and distribution's `auth: token:` want it.
fn jwt(key: &rsa::RsaPrivateKey, cert_der: &[u8], service: &str, scopes: &[String]) -> String {
    use base64::Engine as _;
    let url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [b64(cert_der)]});
    let claims = serde_json::json!({
        "iss": "lazyroot-test-issuer", "sub": "puller", "aud": service,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
        "access": access,
    });
    let signing = format!(
        "{}.{}",
        url(header.to_string().as_bytes()),
        url(claims.to_string().as_bytes())
    );
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let sig = signer.sign(signing.as_bytes()).to_vec();
    format!("{signing}.{}", url(&sig))
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Query parameters of a request path.
fn query(path: &str) -> Vec<(String, String)> {
    path.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// A token service demanding Basic `puller:s3cret`, answering with signed JWTs.
fn token_service(dir: &std::path::Path) -> (Server, std::path::PathBuf) {
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.pem",
            "-days",
            "2",
            "-subj",
            "/CN=lazyroot test token signer",
        ])
        .current_dir(dir));
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(
        &std::fs::read_to_string(dir.join("token.key")).unwrap(),
    )
    .unwrap();
    run(Command::new("openssl")
        .args([
            "x509",
            "-in",
            "token.pem",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ])
        .current_dir(dir));
    let cert_der = std::fs::read(dir.join("token.der")).unwrap();
    let expected = format!("Basic {}", b64(b"puller:s3cret"));
    let server = Server::start(move |req, conn| {
        if req.header("authorization") != Some(expected.as_str()) {
            respond(
                conn,
                401,
                &[("Content-Type", "application/json")],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            );
            return;
        }
        let q = query(&req.path);
        let service = q
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let scopes: Vec<String> = q
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .collect();
        let token = jwt(&key, &cert_der, &service, &scopes);
        let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
        respond(
            conn,
            200,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
    });
    (server, dir.join("token.pem"))
}

#[test]
fn ingest_bearer_token_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    three_layers(&layout, "v1");
    let (tokens, cert) = token_service(tmp.path());
    let realm = format!("http://{}/token", tokens.addr());
    let reg = Registry::start(RegistryAuth::Token(
        &realm,
        "lazyroot-test",
        "lazyroot-test-issuer",
        &cert,
    ));
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", reg.addr()),
        &["--dest-creds", "puller:s3cret"],
    );
    let reference = format!("{}/team/app:v1", reg.addr());
    let mut o = options();
    o.insecure_registries = vec!["127.0.0.1".into()]; // the registry and its token service
    o.creds = Some(("puller".into(), "s3cret".into()));
    let src = open(&reference, &o);
    let img = src.resolve(&amd64()).unwrap();
    read_layers(&*src, &img);
    assert_eq!(src.tags().unwrap(), ["v1"]);

    // One token, for our pull scope, served every request after it.
    let ours: Vec<Request> = tokens
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            r.header("user-agent")
                .is_some_and(|u| u.starts_with("lazyroot/"))
        })
        .cloned()
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let q = query(&ours[0].path);
    assert!(
        q.contains(&("scope".into(), "repository:team/app:pull".into())),
        "{q:?}"
    );
    assert!(
        q.contains(&("service".into(), "lazyroot-test".into())),
        "{q:?}"
    );

    // The token service refuses other credentials; the error says where and why.
    let mut wrong = o.clone();
    wrong.creds = Some(("puller".into(), "nope".into()));
    let e = open(&reference, &wrong)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(
        &e,
        &[
            &reference,
            "token service",
            &realm,
            "HTTP 401",
            "bad credentials",
        ],
    );
}

/// A registry's front on 127.0.0.1:0: Basic auth (`puller:s3cret`) on every request,
/// blobs redirected to `store` when given, the rest relayed to the registry `upstream`.
fn basic_front(upstream: String, store: Option<String>) -> Server {
    Server::start(move |req, conn| {
        if req.header("Authorization") != Some(&format!("Basic {}", b64(b"puller:s3cret"))) {
            respond(
                conn,
                401,
                &[("WWW-Authenticate", "Basic realm=\"registry\"")],
                b"",
            );
        } else if let Some(store) = store.as_ref().filter(|_| req.path.contains("/blobs/")) {
            let to = format!("http://{store}{}?X-Signature=abc", req.path);
            respond(conn, 307, &[("Location", &to)], b"");
        } else {
            relay(conn, &forward(req, &upstream));
        }
    })
}

/// What registries backed by object stores do: blob GETs answered with a redirect to
/// another origin (S3, a CDN). The blob is fetched from there and verified, and the
/// registry's credentials never go with it.
#[test]
fn blobs_redirected_to_another_origin_get_no_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _layout) = registry_with_three_layers(tmp.path());
    let upstream = reg.addr();
    // The "object store": serves whatever path it is sent to, from the registry.
    let store = Server::start({
        let upstream = upstream.clone();
        move |req, conn| relay(conn, &forward(req, &upstream))
    });
    let store_addr = store.addr();
    let front = basic_front(upstream, Some(store_addr));
    let reference = format!("{}/team/app:v1", front.addr());
    let mut o = insecure(&front.addr());
    o.insecure_registries.push(store.addr());
    o.creds = Some(("puller".into(), "s3cret".into()));
    let src = open(&reference, &o);
    let img = src.resolve(&amd64()).unwrap();
    read_layers(&*src, &img);
    let at_store = store.requests.lock().unwrap().clone();
    // The config and the three layers came from the store.
    assert!(at_store.len() >= 4, "{at_store:?}");
    assert!(at_store.iter().all(|r| r.path.contains("X-Signature=abc")));
    assert!(
        at_store.iter().all(|r| r.header("Authorization").is_none()),
        "credentials went to another origin: {at_store:?}"
    );

    // A plain-HTTP redirect target that is not listed as insecure is refused by name.
    let mut strict = o.clone();
    strict.insecure_registries.retain(|h| *h != store.addr());
    let e = open(&reference, &strict)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(&e, &[&reference, &store.addr()]);
}

/// Credentials from Docker credential helpers, as `docker login` with ECR's, GCR's or a
/// desktop keychain leaves them: `credHelpers` for one registry, `credsStore` for all,
/// inline `auths` when the store has nothing; a helper's bad answer names the helper.
#[test]
fn credentials_from_docker_credential_helpers() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _layout) = registry_with_three_layers(tmp.path());
    let front = basic_front(reg.addr(), None);
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let asked = tmp.path().join("asked");
    let helpers = [
        (
            "good",
            format!(
                "cat > {}\necho '{{\"ServerURL\":\"x\",\"Username\":\"puller\",\"Secret\":\"s3cret\"}}'",
                asked.display()
            ),
        ),
        (
            "empty",
            "echo 'credentials not found in native keychain'; exit 1".to_string(),
        ),
        ("garbage", "echo 'not json'".to_string()),
    ];
    for (name, body) in &helpers {
        let p = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let reference = format!("{}/team/app:v1", front.addr());
    let ingest_with = |config: &str| {
        let repo = crate::common::TestRepo::new();
        let file = tmp.path().join("config.json");
        std::fs::write(&file, config.replace("@", &front.addr())).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lazyroot"))
            .env("PATH", &path)
            .args(["ingest", &reference, "--insecure-registry", &front.addr()])
            .arg("--docker-config")
            .arg(&file)
            .arg("--repo")
            .arg(&repo.repo)
            .arg("--keys")
            .arg(&repo.keys)
            .output()
            .unwrap();
        (out.status.success(), crate::common::stderr(&out))
    };

    let (ok, err) = ingest_with(r#"{"credHelpers":{"@":"good"},"credsStore":"garbage"}"#);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), front.addr());
    let (ok, err) = ingest_with(&format!(
        r#"{{"credsStore":"empty","auths":{{"@":{{"auth":"{}"}}}}}}"#,
        b64(b"puller:s3cret")
    ));
    assert!(ok, "the store had nothing; the inline auths answer: {err}");
    let (ok, err) = ingest_with(r#"{"credHelpers":{"@":"garbage"}}"#);
    assert!(!ok);
    assert_parts(
        &err,
        &[
            &reference,
            &format!(
                "credential helper docker-credential-garbage for {}",
                front.addr()
            ),
            "JSON",
        ],
    );
    let (ok, err) = ingest_with(r#"{"credHelpers":{"@":"../evil"}}"#);
    assert!(!ok);
    assert!(err.contains("not a plain name"), "{err}");
}
