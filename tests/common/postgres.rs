//! A PostgreSQL database of its own for each test (the ledger's unit tests and the e2e tests
//! share this file): created on the machine's server, dropped with its connections afterwards.

/// The PostgreSQL server the tests create their databases on (`GUNSYNC_TEST_POSTGRES`, default
/// the machine's own: `postgres://postgres@127.0.0.1:5432/postgres`).
pub fn postgres_admin_url() -> String {
    std::env::var("GUNSYNC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test, dropped (with its connections) when this is dropped.
pub struct PgTestDb {
    pub url: String,
    name: String,
}

impl PgTestDb {
    pub async fn create() -> PgTestDb {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let name = format!("gunsync_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "the ledger tests need PostgreSQL at {admin} (set GUNSYNC_TEST_POSTGRES, or start \
                 it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): {e}"
            )
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        PgTestDb {
            url: url.to_string(),
            name,
        }
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime: drop the database from a thread of its own.
        let (admin, name) = (postgres_admin_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
