//! The database's identity mark: one document of the operator's own
//! (`librechat_operator_database`, `{_id: "identity", mark, markedAt}`, which LibreChat never
//! reads), written the first time the operator uses a database. A dump and restore of the
//! database (a migration, a backup brought back) carries it along with the rest, so the same
//! database keeps its mark wherever it is served from; another database (a URI with a typo in
//! its database name, a restore to the wrong place, another deployment's) has another mark,
//! or none. The caller compares the mark with the one it recorded, and writes nothing through
//! a connection whose database is not the one its records are in.

use mongodb::bson::{doc, oid::ObjectId, DateTime};
use mongodb::options::WriteConcern;

use super::deadline::MongoCall;
use super::error::StoreError;
use super::Store;

/// The operator's collection holding the mark.
pub const IDENTITY: &str = "librechat_operator_database";
const RECORD_ID: &str = "identity";

impl Store {
    /// The database's mark, if it has one.
    pub async fn database_mark(&self) -> Result<Option<String>, StoreError> {
        let record = self
            .collection(IDENTITY)
            .find_one(doc! { "_id": RECORD_ID })
            .deadline("reading the database's identity mark")
            .await?;
        Ok(record.and_then(|r| r.get_str("mark").ok().map(str::to_string)))
    }

    /// The database's mark, written now when it has none. Callers racing to mark one database
    /// all end with the same mark: the first insert wins, the others read it.
    pub async fn mark_database(&self) -> Result<String, StoreError> {
        if let Some(mark) = self.database_mark().await? {
            return Ok(mark);
        }
        let mark = ObjectId::new().to_hex();
        let inserted = self
            .collection(IDENTITY)
            .insert_one(doc! { "_id": RECORD_ID, "mark": &mark, "markedAt": DateTime::now() })
            // Acknowledged by a majority: a mark a failover rolled back would read, at the
            // next connection, as another database.
            .write_concern(WriteConcern::majority())
            .deadline("writing the database's identity mark")
            .await;
        match inserted {
            Ok(_) => Ok(mark),
            Err(e) if e.is_duplicate_key() => self
                .database_mark()
                .await?
                .ok_or(StoreError::Contended("the database's identity mark")),
            Err(e) => Err(e),
        }
    }
}
