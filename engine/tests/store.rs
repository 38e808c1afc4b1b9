//! The store against the real MariaDB and a SQLite file: migrations,
//! idempotent writes, filters and pagination, stats, lead workflow and
//! audit, and the writer's spool replay.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::db::call_events;
use common::db::{Backend, TestDb};
use hark::store::testing::{scalar, write};
use hark::store::{
    CallFilter, LeadFilter, LeadPatch, LeadStatus, Registration, StoreError, StoreEvent,
    spawn_writer,
};

fn uuid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

async fn migrations_apply_once(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.store().await;
    assert_eq!(s.migrate().await.unwrap(), 0, "second run applies nothing");
    assert_eq!(scalar(&s, "SELECT COUNT(*) FROM calls").await.unwrap(), 0);
    s.close().await;
    db.cleanup().await;
}
both_backends!(migrations_apply_once);

async fn every_event_is_written_exactly_once(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.store().await;
    let id = uuid();
    let events = call_events("t1", &id, 1_000_000, "completed", 6);
    assert_eq!(write(&s, &events).await.unwrap(), 0);
    // The same batch again (a replay after an unacknowledged commit).
    assert_eq!(write(&s, &events).await.unwrap(), 0);
    for (table, n) in [
        ("calls", 1),
        ("segments", 6),
        ("turns", 3),
        ("ai_requests", 1),
        ("leads", 1),
    ] {
        assert_eq!(
            scalar(&s, &format!("SELECT COUNT(*) FROM {table}"))
                .await
                .unwrap(),
            n,
            "{table}"
        );
    }
    let c = s.call("t1", &id).await.unwrap();
    assert_eq!(c.call.outcome.as_deref(), Some("completed"));
    assert_eq!(c.call.duration_ms, Some(60_000));
    assert_eq!(c.call.caller_id.as_deref(), Some("+15550001"));
    assert_eq!(c.transcript.len(), 6);
    assert!(
        c.transcript[0].text.contains("DROP TABLE"),
        "text stored verbatim"
    );
    assert!(c.transcript[2].interrupted);
    assert_eq!(c.turns.len(), 3);
    assert_eq!(c.ai_usage[0].tokens_in, 100);
    // Another tenant does not see it.
    assert!(matches!(s.call("t2", &id).await, Err(StoreError::NotFound)));
    s.close().await;
    db.cleanup().await;
}
both_backends!(every_event_is_written_exactly_once);

async fn a_registered_call_keeps_its_tenant_agent_and_metadata(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.store().await;
    let id = uuid();
    let reg = Registration {
        call_id: id.clone(),
        tenant: "acme".into(),
        agent: "sales".into(),
        caller_id: Some("+1999".into()),
        dnis: None,
        direction: "outbound".into(),
        metadata: Some(r#"{"crm":42}"#.into()),
    };
    s.register_call(&reg).await.unwrap();
    assert!(matches!(
        s.register_call(&reg).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.registration(&id).await.unwrap(),
        hark::store::Lookup::Registered(reg.clone())
    );
    // The call starts (the driver's start names the same tenant).
    let mut ev = call_events("acme", &id, 2_000_000, "transferred", 0);
    if let StoreEvent::CallStarted(c) = &mut ev[0] {
        c.caller_id = None;
        c.agent = "other".into();
    }
    write(&s, &ev).await.unwrap();
    // Once started, it is no longer waiting for its connection: a second
    // connection with its UUID is a reuse.
    assert_eq!(
        s.registration(&id).await.unwrap(),
        hark::store::Lookup::Used
    );
    assert_eq!(
        s.registration(&uuid::Uuid::new_v4().to_string())
            .await
            .unwrap(),
        hark::store::Lookup::Fresh
    );
    let c = s.call("acme", &id).await.unwrap().call;
    assert_eq!(c.agent, "sales");
    assert_eq!(
        c.caller_id.as_deref(),
        Some("+1999"),
        "the registration's number is kept"
    );
    assert_eq!(c.direction, "outbound");
    assert_eq!(c.metadata, Some(serde_json::json!({"crm": 42})));
    assert_eq!(c.outcome.as_deref(), Some("transferred"));
    assert_eq!(c.handoff_target.as_deref(), Some("desk"));
    s.close().await;
    db.cleanup().await;
}
both_backends!(a_registered_call_keeps_its_tenant_agent_and_metadata);

async fn filters_and_pages_are_exact(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.store().await;
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for i in 0..25i64 {
        let id = uuid();
        let outcome = ["completed", "transferred", "abandoned"][i as usize % 3];
        // Two calls share each millisecond: the cursor must break ties.
        events.extend(call_events(
            "t1",
            &id,
            10_000_000 + (i / 2) * 1000,
            outcome,
            0,
        ));
        ids.push(id);
    }
    events.extend(call_events("t2", &uuid(), 10_000_000, "completed", 0));
    write(&s, &events).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let f = CallFilter {
            cursor: cursor.clone(),
            limit: 7,
            ..CallFilter::default()
        };
        let (page, next) = s.list_calls("t1", &f).await.unwrap();
        assert!(page.len() <= 7);
        seen.extend(page.into_iter().map(|c| c.id));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "every call once");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "no call twice");
    let f = CallFilter {
        outcome: Some("abandoned".into()),
        limit: 100,
        ..CallFilter::default()
    };
    assert_eq!(s.list_calls("t1", &f).await.unwrap().0.len(), 8);
    let f = CallFilter {
        from_ms: Some(10_005_000),
        to_ms: Some(10_007_000),
        limit: 100,
        ..CallFilter::default()
    };
    assert_eq!(s.list_calls("t1", &f).await.unwrap().0.len(), 4);
    let f = CallFilter {
        caller: Some("' OR '1'='1".into()),
        limit: 100,
        ..CallFilter::default()
    };
    assert_eq!(s.list_calls("t1", &f).await.unwrap().0.len(), 0);
    let f = CallFilter {
        cursor: Some("1' OR 1=1 --.x".into()),
        limit: 10,
        ..CallFilter::default()
    };
    assert!(matches!(
        s.list_calls("t1", &f).await,
        Err(StoreError::BadCursor)
    ));
    s.close().await;
    db.cleanup().await;
}
both_backends!(filters_and_pages_are_exact);

async fn stats_sum_the_period(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.store().await;
    let mut events = Vec::new();
    for (i, outcome) in ["completed", "completed", "transferred", "abandoned"]
        .iter()
        .enumerate()
    {
        events.extend(call_events(
            "t1",
            &uuid(),
            50_000_000 + i as i64,
            outcome,
            4,
        ));
    }
    // Outside the period, and another tenant's.
    events.extend(call_events("t1", &uuid(), 90_000_000, "failed", 4));
    events.extend(call_events("t2", &uuid(), 50_000_000, "failed", 4));
    write(&s, &events).await.unwrap();
    let st = s.stats("t1", 50_000_000, 60_000_000).await.unwrap();
    assert_eq!(st.calls, 4);
    assert_eq!(st.outcomes.get("completed"), Some(&2));
    assert_eq!(st.outcomes.get("transferred"), Some(&1));
    assert_eq!(st.outcomes.get("failed"), None);
    assert_eq!(st.average_handle_ms, Some(60_000));
    // Each call has turns of 410 and 430 ms.
    assert_eq!(st.voice_to_voice.turns, 8);
    assert_eq!(st.voice_to_voice.p50_ms, Some(410));
    assert_eq!(st.voice_to_voice.p95_ms, Some(430));
    assert_eq!(st.ai_cost.len(), 1);
    assert_eq!(st.ai_cost[0].requests, 4);
    assert_eq!(st.ai_cost[0].tokens_in, 400);
    assert!((st.ai_cost[0].cost - 1.0).abs() < 1e-9);
    s.close().await;
    db.cleanup().await;
}
both_backends!(stats_sum_the_period);

async fn leads_follow_the_workflow_and_are_audited(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.store().await;
    write(&s, &call_events("t1", &uuid(), 1_000, "completed", 0))
        .await
        .unwrap();
    write(&s, &call_events("t2", &uuid(), 1_000, "completed", 0))
        .await
        .unwrap();
    let (leads, _) = s
        .list_leads(
            "t1",
            &LeadFilter {
                limit: 10,
                ..LeadFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(leads.len(), 1);
    let id = leads[0].id;
    assert_eq!(leads[0].status, "new");
    let to = |st| LeadPatch {
        status: Some(st),
        notes: None,
    };
    assert!(matches!(
        s.patch_lead("t1", id, &to(LeadStatus::Converted), None)
            .await,
        Err(StoreError::Transition {
            from: "new",
            to: "converted"
        })
    ));
    // Another tenant cannot touch it.
    assert!(matches!(
        s.patch_lead("t2", id, &to(LeadStatus::Qualified), None)
            .await,
        Err(StoreError::NotFound)
    ));
    let l = s
        .patch_lead("t1", id, &to(LeadStatus::Qualified), Some(7))
        .await
        .unwrap();
    assert_eq!(l.status, "qualified");
    let l = s
        .patch_lead(
            "t1",
            id,
            &LeadPatch {
                status: None,
                notes: Some("call back Tuesday".into()),
            },
            Some(7),
        )
        .await
        .unwrap();
    assert_eq!(l.notes.as_deref(), Some("call back Tuesday"));
    assert_eq!(s.lead("t1", id).await.unwrap().status, "qualified");
    // The status it has, the notes it has: nothing changes, nothing is
    // audited (the count below stays 2).
    let same = s
        .patch_lead("t1", id, &to(LeadStatus::Qualified), Some(7))
        .await
        .unwrap();
    assert_eq!(same.updated_ms, l.updated_ms);
    assert_eq!(
        scalar(
            &s,
            "SELECT COUNT(*) FROM audit_log WHERE tenant_id = 't1' AND token_id = 7"
        )
        .await
        .unwrap(),
        2
    );
    let (new, _) = s
        .list_leads(
            "t1",
            &LeadFilter {
                status: Some(LeadStatus::New),
                limit: 10,
                ..LeadFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(new.is_empty());
    s.close().await;
    db.cleanup().await;
}
both_backends!(leads_follow_the_workflow_and_are_audited);

async fn a_spool_left_by_a_crash_is_replayed_once(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.store().await;
    let id = uuid();
    let events = call_events("t1", &id, 3_000_000, "completed", 10);
    // Half of the events made it to the database before the crash; all of
    // them are in the spool, plus a torn last line.
    write(&s, &events[..events.len() / 2]).await.unwrap();
    let spool = db.dir.path().join("hark.spool");
    let mut text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    text.push_str("{\"kind\":\"segm");
    std::fs::write(&spool, text).unwrap();
    let w = spawn_writer(s.clone(), spool.clone(), 64, 4, Duration::from_millis(50)).unwrap();
    let stats = w.stats();
    w.finish(Duration::from_secs(5)).await;
    assert_eq!(
        stats
            .spool_pending
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0, "spool emptied");
    assert_eq!(
        scalar(&s, "SELECT COUNT(*) FROM segments").await.unwrap(),
        10
    );
    assert_eq!(scalar(&s, "SELECT COUNT(*) FROM turns").await.unwrap(), 5);
    assert_eq!(scalar(&s, "SELECT COUNT(*) FROM calls").await.unwrap(), 1);
    assert_eq!(scalar(&s, "SELECT COUNT(*) FROM leads").await.unwrap(), 1);
    assert_eq!(
        scalar(&s, "SELECT COUNT(*) FROM ai_requests")
            .await
            .unwrap(),
        1
    );
    s.close().await;
    db.cleanup().await;
}
both_backends!(a_spool_left_by_a_crash_is_replayed_once);
