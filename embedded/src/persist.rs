//! Durable object storage in SQLite (as k3s's kine keeps Kubernetes state): objects and the
//! resourceVersion counter in, the same back after a restart.

use super::error::EmbeddedError;
use rusqlite::{Connection, params};
use serde_json::Value;
use std::path::Path;

/// One stored object as loaded at start.
pub struct StoredObject {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub object: Value,
}

pub struct Db {
    conn: Connection,
}

fn db_err(step: &'static str) -> impl Fn(rusqlite::Error) -> EmbeddedError {
    move |source| EmbeddedError::Database { step, source }
}

impl Db {
    pub fn open(path: &Path) -> Result<Self, EmbeddedError> {
        let conn = Connection::open(path).map_err(db_err("open the database"))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS objects (
                 key TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                 rv INTEGER NOT NULL, body TEXT NOT NULL,
                 PRIMARY KEY (key, namespace, name));
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(db_err("create the schema"))?;
        Ok(Db { conn })
    }

    /// The last resourceVersion handed out and every stored object.
    pub fn load(&self) -> Result<(u64, Vec<StoredObject>), EmbeddedError> {
        let rv: i64 = self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'rv'", [], |r| r.get(0))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(0),
                other => Err(other),
            })
            .map_err(db_err("read the resourceVersion"))?;
        let mut stmt = self
            .conn
            .prepare("SELECT key, namespace, name, body FROM objects ORDER BY rv")
            .map_err(db_err("read objects"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(db_err("read objects"))?;
        let mut objects = Vec::new();
        for row in rows {
            let (key, namespace, name, body) = row.map_err(db_err("read objects"))?;
            let object = serde_json::from_str(&body).map_err(|source| EmbeddedError::Corrupt {
                key: format!("{key}/{namespace}/{name}"),
                source,
            })?;
            objects.push(StoredObject {
                key,
                namespace,
                name,
                object,
            });
        }
        Ok((rv.max(0) as u64, objects))
    }

    pub fn put(
        &self,
        key: &str,
        namespace: &str,
        name: &str,
        rv: u64,
        object: &Value,
    ) -> Result<(), EmbeddedError> {
        self.conn
            .execute(
                "INSERT INTO objects (key, namespace, name, rv, body) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key, namespace, name) DO UPDATE SET rv = ?4, body = ?5",
                params![key, namespace, name, rv as i64, object.to_string()],
            )
            .map_err(db_err("write an object"))?;
        self.set_rv(rv)
    }

    pub fn delete(
        &self,
        key: &str,
        namespace: &str,
        name: &str,
        rv: u64,
    ) -> Result<(), EmbeddedError> {
        self.conn
            .execute(
                "DELETE FROM objects WHERE key = ?1 AND namespace = ?2 AND name = ?3",
                params![key, namespace, name],
            )
            .map_err(db_err("delete an object"))?;
        self.set_rv(rv)
    }

    fn set_rv(&self, rv: u64) -> Result<(), EmbeddedError> {
        self.conn
            .execute(
                "INSERT INTO meta (name, value) VALUES ('rv', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = ?1",
                params![rv as i64],
            )
            .map_err(db_err("write the resourceVersion"))?;
        Ok(())
    }
}
