//! kubectl against the embedded server (or KUBECONFIG's cluster): get with server-side printer
//! columns, describe, apply (create, then configure), patch, delete. Skips when kubectl is
//! missing.

mod support;

use support::{cluster, kubectl_available};

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn kubectl_get_describe_apply_patch_delete() {
    if !kubectl_available() {
        eprintln!("skipping: kubectl is not installed");
        return;
    }
    let mut c = cluster().await;
    c.install_task_run_crd().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("objects.yaml");
    let write = |version: u32| {
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {{app: demo}}\ndata:\n  level: \"{version}\"\n---\n\
                 apiVersion: example.kube-envtest.dev/v1\nkind: TaskRun\nmetadata:\n  name: task-42\nspec:\n  taskId: 42\n  serviceName: web\n  agentName: claude\n  contextVersion: {version}\n"
            ),
        )
        .unwrap();
    };
    let path = manifest.to_str().unwrap().to_string();

    write(1);
    let out = c.kubectl(&["apply", "-f", &path]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("configmap/settings created"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("taskrun.example.kube-envtest.dev/task-42 created"),
        "{}",
        text(&out)
    );

    let out = c.kubectl(&["apply", "-f", &path]).await.unwrap();
    assert!(text(&out).contains("unchanged"), "{}", text(&out));

    write(2);
    let out = c.kubectl(&["apply", "-f", &path]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("task-42 configured"), "{}", text(&out));

    let out = c.kubectl(&["get", "tr"]).await.unwrap();
    let table = text(&out);
    assert!(out.status.success(), "{table}");
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "NAME", "TASK", "SERVICE", "AGENT", "VERSION", "PHASE", "AGE",
    ] {
        assert!(header.contains(col), "{table}");
    }
    assert!(
        table.contains("task-42") && table.contains("claude"),
        "{table}"
    );

    let out = c
        .kubectl(&[
            "get",
            "cm",
            "-l",
            "app=demo",
            "-o",
            "jsonpath={.items[0].data.level}",
        ])
        .await
        .unwrap();
    assert_eq!(text(&out), "2");

    let out = c
        .kubectl(&["describe", "configmap", "settings"])
        .await
        .unwrap();
    assert!(
        out.status.success() && text(&out).contains("level"),
        "{}",
        text(&out)
    );

    let out = c
        .kubectl(&[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"level":"3"}}"#,
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = c
        .kubectl(&[
            "patch",
            "configmap",
            "settings",
            "-p",
            r#"{"data":{"level":"4"}}"#,
        ])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "strategic merge patch: {}",
        text(&out)
    );

    let out = c
        .kubectl(&["get", "cm", "settings", "-o", "yaml"])
        .await
        .unwrap();
    assert!(text(&out).contains("level: \"4\""), "{}", text(&out));

    let bogus = dir.path().join("bogus.yaml");
    std::fs::write(&bogus, "apiVersion: example.kube-envtest.dev/v1\nkind: TaskRun\nmetadata:\n  name: task-43\nspec:\n  taskId: 43\n  serviceName: web\n  agentName: claude\n  contextVersion: 1\n  bogus: 1\n").unwrap();
    let out = c
        .kubectl(&["apply", "-f", bogus.to_str().unwrap()])
        .await
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("strict decoding error: unknown field \"spec.bogus\""),
        "{}",
        text(&out)
    );

    let out = c.kubectl(&["delete", "-f", &path]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = c.kubectl(&["get", "tr", "task-42"]).await.unwrap();
    assert!(
        !out.status.success() && text(&out).contains("NotFound"),
        "{}",
        text(&out)
    );
}
