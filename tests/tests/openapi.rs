//! The OpenAPI document is served, complete for every collection, and self-consistent;
//! health and readiness answer.

use axum::http::Method;
use lockgate_model::ObjectKind;
use lockgate_tests::*;

on_both!(document_lists_every_endpoint, |app: TestApp| async move {
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .expect(200)
        .body;
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    for kind in ObjectKind::ALL {
        let base = format!("/api/v1/{}", kind.collection());
        for (path, methods) in [
            (base.clone(), vec!["get", "post"]),
            (format!("{base}/{{id}}"), vec!["get", "patch", "delete"]),
            (format!("{base}/{{id}}/events"), vec!["get"]),
        ] {
            let item = paths.get(&path).unwrap_or_else(|| panic!("{path} missing"));
            for m in methods {
                assert!(item[m]["operationId"].is_string(), "{m} {path}");
                assert!(
                    item[m]["responses"]["403"].is_object(),
                    "{m} {path} documents 403"
                );
            }
        }
    }
    for p in [
        "/api/v1/employees/import",
        "/api/v1/employees/export",
        "/api/v1/system/settings",
        "/api/v1/tokens",
        "/api/v1/bulk/tags",
        "/api/v1/employees/{id}/deactivate",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    // Every schema reference resolves.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap_or("");
        assert!(schemas.contains_key(name), "unresolved {name}");
    }
    // The documented operations exist: each documented collection answers 401 (not 404) without a token.
    for kind in ObjectKind::ALL {
        let r = app
            .call(
                Method::GET,
                &format!("/api/v1/{}", kind.collection()),
                None,
                None,
            )
            .await;
        assert_eq!(r.status.as_u16(), 401, "{}", kind.collection());
        assert!(r.headers.contains_key("www-authenticate"));
    }
});

on_both!(health_and_readiness, |app: TestApp| async move {
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None)
            .await
            .expect(200)
            .body["status"],
        "ok"
    );
    assert_eq!(
        app.call(Method::GET, "/readyz", None, None)
            .await
            .expect(200)
            .body["status"],
        "ready"
    );
    app.store.close().await;
    let r = app
        .call(Method::GET, "/readyz", None, None)
        .await
        .expect(503);
    assert_eq!(r.headers["content-type"], "application/problem+json");
});
