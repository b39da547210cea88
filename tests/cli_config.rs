//! The binary's offline commands: config, convert, crd.

use std::path::PathBuf;
use std::process::{Command, Output};

fn mvconf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mvconf"))
        .args(args)
        .env_remove("MVCONF_CONFIG")
        .output()
        .expect("run mvconf")
}

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mvconf-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn config_accepts_the_manuals_example_and_masks_the_password() {
    let out = mvconf(&["-f", &example("conf.json"), "config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["services"][0]["ip_pool"][1], "192.168.8.139");
    assert_eq!(v["auth"]["password"], "******");
    assert!(
        !stdout.contains("\"admin\"\n  }"),
        "password leaked: {stdout}"
    );
}

#[test]
fn config_reports_every_error_with_its_field_and_fails() {
    let bad = tmp(
        "bad.json",
        r#"{"networks":[{"name":"m","subnet":"10.0.0.0/24","gateway":"10.1.0.1","parent":"eth1"}],
            "services":[{"name":"a","network":"x","ip_pool":["10.0.0.9-10.0.0.1"]}]}"#,
    );
    let out = mvconf(&["-f", bad.to_str().unwrap(), "config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    for field in [
        "networks[0].gateway",
        "services[0].network",
        "services[0].ip_pool[0]",
    ] {
        assert!(err.contains(field), "{field} missing from: {err}");
    }
}

#[test]
fn config_defaults_to_conf_json_in_the_current_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_mvconf"))
        .arg("config")
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples"))
        .env_remove("MVCONF_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn convert_makes_a_manifest_without_the_password() {
    let out = mvconf(&[
        "-f",
        &example("conf.json"),
        "convert",
        "--name",
        "bank",
        "-n",
        "prod",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.contains("kind: MacvlanBinding") && yaml.contains("name: bank-dce-auth"),
        "{yaml}"
    );
    assert!(!yaml.contains("password"), "{yaml}");
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(
        note.contains("kubectl -n prod create secret generic bank-dce-auth"),
        "{note}"
    );
    // The manual's ip_range (the whole subnet, over the pool) is left out:
    // a manifest refuses it, and mvconf derives one outside the pools.
    assert!(!yaml.contains("ipRange"), "{yaml}");
    assert!(
        note.contains("ip_range 192.168.8.0/24 overlaps a pool; left out"),
        "{note}"
    );
    // The manifest it prints is itself a valid configuration.
    let round = tmp("bank.yaml", &yaml);
    let out = mvconf(&["-f", round.to_str().unwrap(), "config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn convert_granted_splits_the_file_for_the_platform_and_the_team() {
    let out = mvconf(&[
        "-f",
        &example("conf.json"),
        "convert",
        "--granted",
        "-n",
        "team-a",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    for want in [
        "kind: SwarmEndpoint",
        "kind: MacvlanNetwork",
        "kind: MacvlanBinding",
        "- team-a",
        "network: macvlan",
    ] {
        assert!(yaml.contains(want), "no {want:?} in {yaml}");
    }
    // The team's binding defines nothing cluster-wide.
    let team = yaml
        .split("# For the team of namespace team-a:")
        .nth(1)
        .unwrap();
    assert!(!team.contains("subnet") && !team.contains("url:"), "{team}");
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(
        note.contains("kubectl -n mvconf-system create secret generic conf-dce-auth"),
        "{note}"
    );
    // Without a namespace to grant, it says so.
    let out = mvconf(&["-f", &example("conf.json"), "convert", "--granted"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--namespace"));
}

#[test]
fn convert_writes_the_secret_file_0600_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("mvconf-secret-{}.yaml", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let out = mvconf(&[
        "-f",
        &example("conf.json"),
        "convert",
        "--secret-file",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("password: admin")
    );
    let again = mvconf(&[
        "-f",
        &example("conf.json"),
        "convert",
        "--secret-file",
        path.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn crd_prints_the_committed_file() {
    let out = mvconf(&["crd"]);
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/mvconf.yaml"))
            .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}

#[test]
fn debug_env_turns_on_debug_logs() {
    let out = Command::new(env!("CARGO_BIN_EXE_mvconf"))
        .args(["-f", &example("conf.json"), "config"])
        .env("DEBUG", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("DEBUG") && err.contains("configuration loaded"),
        "{err}"
    );
}

// Exit codes (README "Exit codes"): 2 for every usage or configuration
// error, clap's and ours; 0 for what worked. 1 (actions failed) and 3
// (audit findings) come from the lab tests (`lab_cli.rs`).
#[test]
fn usage_and_configuration_errors_exit_with_2() {
    let missing = std::env::temp_dir().join("mvconf-cli-no-such-file.json");
    let cases: [&[&str]; 5] = [
        &["--no-such-flag"],
        &["no-such-command"],
        &["up", "--per-node", "many"],
        &["-f", missing.to_str().unwrap(), "config"],
        &["-f", missing.to_str().unwrap(), "up"],
    ];
    for args in cases {
        let out = mvconf(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "mvconf {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "mvconf {args:?} said nothing");
    }
    for args in [&["--version"][..], &["--help"], &["crd"]] {
        assert_eq!(mvconf(args).status.code(), Some(0), "mvconf {args:?}");
    }
}

#[test]
fn completion_scripts_and_the_man_page_are_printed() {
    for (shell, mark) in [
        ("bash", "complete -F _mvconf"),
        ("zsh", "#compdef mvconf"),
        ("fish", "complete -c mvconf"),
    ] {
        let out = mvconf(&["completion", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(mark), "{shell}: {script}");
        assert!(script.contains("audit"), "{shell}: no subcommands");
    }
    let out = mvconf(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH mvconf"),
        "{page}"
    );
    assert!(page.contains("audit"), "{page}");
    assert_eq!(mvconf(&["completion", "tcsh"]).status.code(), Some(2));
}

// Migration: the old mvconf's ~/.dce_auth ({url: base64("user:password")})
// moves into the 0600 login file; a file others can read is refused.
#[test]
fn login_import_old_moves_the_old_mvconfs_login_into_the_0600_file() {
    use std::os::unix::fs::PermissionsExt;
    let home = std::env::temp_dir().join(format!("mvconf-cli-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let old = home.join(".dce_auth");
    // base64("admin:s3cret")
    std::fs::write(&old, r#"{"192.168.56.102": "YWRtaW46czNjcmV0"}"#).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_mvconf"))
            .args(["login", "--import-old"])
            .env("HOME", &home)
            .env_remove("MVCONF_AUTH_FILE")
            .env_remove("MVCONF_DCE_AUTH_FILE")
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Imported 1 login") && !said.contains("s3cret"),
        "{said}"
    );
    let saved = home.join(".mvconf/auth.json");
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let current = file["current"].as_str().unwrap();
    assert!(current.contains("192.168.56.102"), "{file}");
    assert_eq!(file["logins"][current]["username"], "admin");
    assert_eq!(file["logins"][current]["password"], "s3cret");
}

// `-o json|yaml` on the commands that print a document.
#[test]
fn documents_print_as_json_or_yaml_on_request() {
    let conf = example("conf.json");
    let parse_yaml = |out: &Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
    };
    let parse_json = |out: &Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = parse_yaml(&mvconf(&["-f", &conf, "config", "-o", "yaml"]));
    assert_eq!(v["services"][0]["ip_pool"][1], "192.168.8.139");
    let v = parse_json(&mvconf(&[
        "-f",
        &example("binding.yaml"),
        "config",
        "-o",
        "json",
    ]));
    assert_eq!(v["kind"], "MacvlanBinding");
    let v = parse_json(&mvconf(&["crd", "-o", "json"]));
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().unwrap().len(), 4);
    let v = parse_json(&mvconf(&["-f", &conf, "convert", "-o", "json"]));
    assert_eq!(v["kind"], "MacvlanBinding");
    let v = parse_json(&mvconf(&[
        "-f",
        &conf,
        "convert",
        "--granted",
        "-n",
        "team-a",
        "-o",
        "json",
    ]));
    let kinds: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"MacvlanNetwork") && kinds.contains(&"MacvlanBinding"),
        "{kinds:?}"
    );
}
