//! What a user sees when the config or the command line is wrong: one line that names the
//! file, the key and what was expected; never a stack trace. No root needed.

use ipop_lab_tests::require_binaries;
use std::path::PathBuf;
use std::process::{Command, Output};

fn controller(args: &[&str]) -> Output {
    Command::new(require_binaries().join("gvpn-controller"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("gvpn-controller runs")
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipop-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 2, one line on stderr containing every `needle`, no panic.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    ipop_lab_tests::assert_one_line_error(o, 2, needles);
}

#[test]
fn missing_config_file_is_named() {
    let o = controller(&["-c", "/nonexistent/ipop.json"]);
    assert_one_line_error(&o, &["/nonexistent/ipop.json", "cannot read"]);
}

#[test]
fn broken_json_is_named_with_its_position() {
    let p = write_config(
        "broken.json",
        "{\"ip4\": \"10.0.3.1\",\n \"switchmode\": 1,,}",
    );
    let o = controller(&["-c", p.to_str().unwrap(), "--check"]);
    assert_one_line_error(&o, &["broken.json", "not valid JSON", "line 2"]);
}

#[test]
fn wrong_value_names_key_expectation_and_value() {
    let p = write_config(
        "badport.json",
        r#"{"ip4": "10.0.3.1", "switchmode": 1, "icc": true, "icc_port": "abc"}"#,
    );
    let o = controller(&["-c", p.to_str().unwrap(), "--check"]);
    assert_one_line_error(&o, &["badport.json", "\"icc_port\"", "1-65535", "\"abc\""]);
}

#[test]
fn routed_mode_is_refused_with_the_way_out() {
    let p = write_config("routed.json", r#"{"ip4": "10.0.3.1", "switchmode": 0}"#);
    let o = controller(&["-c", p.to_str().unwrap(), "--check"]);
    assert_one_line_error(&o, &["routed.json", "switchmode", "\"switchmode\": 1"]);
}

#[test]
fn unknown_key_is_a_warning_and_the_config_still_loads() {
    let p = write_config(
        "unknown.json",
        r#"{"ip4": "10.0.3.1", "switchmode": 1, "icc": true, "colour": "blue", "sec": false,
            "peers": [{"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900"}]}"#,
    );
    let o = controller(&["-c", p.to_str().unwrap(), "--check"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("\"colour\""),
        "warning should name the key:\n{err}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    // uid = sha1("10.0.3.1"), as the original controller computed it.
    assert!(
        out.contains("4a4453572792b408e0ac91a75e6b6f89146e171b"),
        "{out}"
    );
}

#[test]
fn override_string_wins_and_is_named_in_its_errors() {
    let p = write_config(
        "base.json",
        r#"{"ip4": "10.0.3.1", "switchmode": 1, "icc": true}"#,
    );
    let o = controller(&[
        "-c",
        p.to_str().unwrap(),
        "-s",
        r#"{"ip4": "10.0.3.2"}"#,
        "--check",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // sha1("10.0.3.2")
    assert!(String::from_utf8_lossy(&o.stdout).contains("d05719abdcdedb54fa14f4d049532fd97c5e2bfb"));
    let o = controller(&["-c", p.to_str().unwrap(), "-s", r#"{"tap_mtu": 100}"#]);
    assert_one_line_error(&o, &["-s", "\"tap_mtu\""]);
}

#[test]
fn no_config_at_all_says_what_to_give() {
    let o = controller(&[]);
    assert_one_line_error(&o, &["-c"]);
}

#[test]
fn tincan_help_and_version() {
    let bin = require_binaries().join("ipop-tincan");
    let o = Command::new(&bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    for needle in ["TAPNAME", "PORT", "--rpc", "-v"] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
    // -V and --version on both binaries (and the original tincan's -v).
    for flag in ["-v", "-V", "--version"] {
        let o = Command::new(&bin).arg(flag).output().unwrap();
        assert!(
            String::from_utf8_lossy(&o.stdout).starts_with("ipop-tincan "),
            "{flag}"
        );
    }
    let controller = require_binaries().join("gvpn-controller");
    for flag in ["-V", "--version"] {
        let o = Command::new(&controller).arg(flag).output().unwrap();
        assert!(
            String::from_utf8_lossy(&o.stdout).starts_with("gvpn-controller "),
            "{flag}"
        );
    }
    for flag in ["-h", "--help"] {
        let o = Command::new(&controller).arg(flag).output().unwrap();
        let help = String::from_utf8_lossy(&o.stdout);
        for long in [
            "--config",
            "--config-json",
            "--update",
            "--peer-map",
            "--check",
        ] {
            assert!(help.contains(long), "{long} missing from {flag}:\n{help}");
        }
    }
    // A query to a port nothing listens on fails cleanly, naming the port.
    let o = Command::new(&bin)
        .args(["--rpc", "get_state", "--port", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("127.0.0.1:1") && !err.contains("panicked"),
        "{err}"
    );
}
