//! The example files parse, and name what the code names (module, plugin type, config).

use std::path::Path;

fn json(rel: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn example_files_agree_with_the_code() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/provisioner.json");
    let c = lazyroot::provisioner::Config::load(&config).unwrap();
    assert!(c.repositories.contains_key("images.example.org"));

    let csi = json("csi/lazyroot.json");
    assert_eq!(csi["type"], lazyroot::csi::PLUGIN_NAME);
    assert_eq!(
        csi["endpoints"][0]["endpoint"],
        format!("unix://{}", c.csi_socket.unwrap().display())
    );

    let task = json("mesos/task.json");
    let image = &task["container"]["mesos"]["image"];
    assert_eq!(image["type"], "APPC");
    assert!(image["appc"]["id"].as_str().unwrap().starts_with("sha512-"));
    assert_eq!(
        task["container"]["volumes"][0]["source"]["csi_volume"]["plugin_name"],
        lazyroot::csi::PLUGIN_NAME
    );
    let app = json("marathon/app.json");
    assert_eq!(app["container"]["type"], "MESOS");

    let modules = json("mesos/lazyroot-modules.json");
    let name = modules["libraries"][0]["modules"][0]["name"]
        .as_str()
        .unwrap();
    assert_eq!(name, "org_lazyroot_LazyrootIsolator");
    let flags = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mesos/agent-flags.txt"),
    )
    .unwrap();
    assert!(flags.contains(name), "the agent flags enable the module");
    assert!(flags.contains(&format!("--appc_store_dir={}", c.appc_store_dir.display())));
    let discovery = c.discovery_listen.expect("the example serves discovery");
    assert!(flags.contains(&format!(
        "--appc_simple_discovery_uri_prefix=http://{discovery}/"
    )));

    // By name and version only: what discovery answers for (a configured repository).
    let by_name = json("mesos/task-by-name.json");
    let appc = &by_name["container"]["mesos"]["image"]["appc"];
    assert!(appc.get("id").is_none());
    let name = appc["name"].as_str().unwrap();
    assert!(c.repositories.contains_key(name.split('/').next().unwrap()));
    // Mesos 1.11's fetcher refuses a name without `os` and `arch` labels (and its cache
    // matches label sets exactly): the request it would send must be one the daemon reads.
    let label = |k: &str| {
        appc["labels"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["key"] == k)
            .and_then(|l| l["value"].as_str())
            .map(str::to_string)
    };
    let request = format!(
        "{name}-{}-{}-{}.aci",
        label("version").unwrap_or_else(|| "latest".into()),
        label("os").expect("an os label"),
        label("arch").expect("an arch label")
    );
    let readings = lazyroot::provisioner::discovery::name::candidates(&request).unwrap();
    assert!(readings.iter().any(|r| r.name() == name), "{request}");
    let app = json("marathon/app-by-name.json");
    assert_eq!(app["container"]["appc"]["image"], name);
    assert!(app["container"]["appc"].get("id").is_none());
    for k in ["version", "os", "arch"] {
        assert!(app["container"]["appc"]["labels"].get(k).is_some(), "{k}");
    }
}
