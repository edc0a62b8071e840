//! The plugins' key-value storage on both databases: scoped by plugin, overwrite, delete,
//! prefix listing in bytewise order, and the same through the host's `KvStore` adapter.

use lockgate::plugins::DbKv;
use lockgate_host::KvStore;
use lockgate_store::StoreError;
use lockgate_tests::*;

on_both!(scoped_by_plugin, |app: TestApp| async move {
    // Move the whole app in (not only `app.store`): it owns the test database.
    let app = app;
    let s = &app.store;
    s.plugin_kv_set("a", "watermark", b"1").await.unwrap();
    s.plugin_kv_set("b", "secret", b"b's").await.unwrap();
    // Plugin A cannot read plugin B's key, not even under the same key name.
    assert_eq!(s.plugin_kv_get("a", "secret").await.unwrap(), None);
    assert_eq!(
        s.plugin_kv_get("b", "secret").await.unwrap().as_deref(),
        Some(&b"b's"[..])
    );
    s.plugin_kv_set("b", "watermark", b"other").await.unwrap();
    assert_eq!(
        s.plugin_kv_get("a", "watermark").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    // Overwrite.
    s.plugin_kv_set("a", "watermark", &[0, 255, 7])
        .await
        .unwrap();
    assert_eq!(
        s.plugin_kv_get("a", "watermark").await.unwrap().as_deref(),
        Some(&[0u8, 255, 7][..])
    );
    assert_eq!(
        s.plugin_kv_get("b", "watermark").await.unwrap().as_deref(),
        Some(&b"other"[..])
    );
    // Delete: only the caller's key; a missing key is fine.
    assert!(s.plugin_kv_delete("a", "watermark").await.unwrap());
    assert!(!s.plugin_kv_delete("a", "watermark").await.unwrap());
    assert_eq!(s.plugin_kv_get("a", "watermark").await.unwrap(), None);
    assert!(s.plugin_kv_get("b", "watermark").await.unwrap().is_some());
    // Bad input.
    assert!(matches!(
        s.plugin_kv_set("a", "", b"x").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.plugin_kv_get("", "k").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.plugin_kv_set("a", "k", &vec![0u8; (1 << 20) + 1]).await,
        Err(StoreError::Invalid(_))
    ));
});

on_both!(
    lists_by_prefix_in_bytewise_order,
    |app: TestApp| async move {
        // Move the whole app in (not only `app.store`): it owns the test database.
        let app = app;
        let s = &app.store;
        for key in ["cursor/b", "cursor/a", "cursor/B", "cursor", "cursos", "x"] {
            s.plugin_kv_set("a", key, b"v").await.unwrap();
        }
        s.plugin_kv_set("b", "cursor/other", b"v").await.unwrap();
        assert_eq!(
            s.plugin_kv_list("a", "cursor/", 10).await.unwrap(),
            ["cursor/B", "cursor/a", "cursor/b"]
        );
        assert_eq!(
            s.plugin_kv_list("a", "cursor/", 2).await.unwrap(),
            ["cursor/B", "cursor/a"]
        );
        assert_eq!(
            s.plugin_kv_list("a", "", 10).await.unwrap(),
            ["cursor", "cursor/B", "cursor/a", "cursor/b", "cursos", "x"]
        );
        assert_eq!(
            s.plugin_kv_list("b", "", 10).await.unwrap(),
            ["cursor/other"]
        );
        assert!(s.plugin_kv_list("a", "zzz", 10).await.unwrap().is_empty());
        assert!(s.plugin_kv_list("c", "", 10).await.unwrap().is_empty());
    }
);

on_both!(host_adapter_is_scoped, |app: TestApp| async move {
    // Move the whole app in (not only `app.store`): it owns the test database.
    let app = app;
    let kv = DbKv::new(app.store.clone());
    kv.set("a", "k1", b"1".to_vec()).await.unwrap();
    kv.set("a", "k2", b"2".to_vec()).await.unwrap();
    kv.set("b", "k1", b"other".to_vec()).await.unwrap();
    assert_eq!(kv.get("a", "k1").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        kv.get("b", "k1").await.unwrap().as_deref(),
        Some(&b"other"[..])
    );
    assert_eq!(kv.get("c", "k1").await.unwrap(), None);
    kv.set("a", "k1", b"one".to_vec()).await.unwrap();
    assert_eq!(
        kv.get("a", "k1").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(kv.list_keys("a", "k", 10).await.unwrap(), ["k1", "k2"]);
    kv.delete("a", "k1").await.unwrap();
    kv.delete("a", "missing").await.unwrap();
    assert_eq!(kv.list_keys("a", "", 10).await.unwrap(), ["k2"]);
    assert_eq!(kv.list_keys("b", "", 10).await.unwrap(), ["k1"]);
    assert!(matches!(
        kv.get("a", "").await,
        Err(lockgate_host::types::PluginError::Invalid(_))
    ));
});

on_both!(
    usage_counts_keys_and_bytes_per_plugin,
    |app: TestApp| async move {
        // What the host's kv quota (`plugins.limits.kv_max_entries`, `kv_max_bytes`) counts.
        let app = app;
        let kv = DbKv::new(app.store.clone());
        assert_eq!(
            kv.usage("a", "").await.unwrap(),
            lockgate_host::KvUsage::default()
        );
        kv.set("a", "k1", vec![1; 10]).await.unwrap();
        kv.set("a", "ключ", vec![2; 100]).await.unwrap();
        kv.set("b", "k1", vec![3; 1000]).await.unwrap();
        // Bytes of keys (UTF-8, not characters) and values.
        let all = kv.usage("a", "").await.unwrap();
        assert_eq!(
            (all.entries, all.bytes),
            (2, 2 + 10 + "ключ".len() as u64 + 100)
        );
        // The key a write is about to replace is left out.
        let but = kv.usage("a", "ключ").await.unwrap();
        assert_eq!((but.entries, but.bytes), (1, 12));
        let b = kv.usage("b", "").await.unwrap();
        assert_eq!((b.entries, b.bytes), (1, 1002));
    }
);
