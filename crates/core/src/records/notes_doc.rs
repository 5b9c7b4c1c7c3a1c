//! One note as an Automerge document: `body` (Text, merged character by character),
//! `createdAt` (string) and `alive` (bool). Every edit also writes `alive = true`, so
//! an edit concurrent with a delete leaves a conflict on `alive` with one `true` in
//! it, and [`NoteDoc::alive`] keeps the note; a delete made after seeing the edit
//! overwrites every value and removes it. Root keys of a newer schema stay in the
//! document untouched.

use automerge::{
    transaction::Transactable, ActorId, AutoCommit, ObjId, ObjType, ReadDoc, Value, ROOT,
};

const BODY: &str = "body";
const CREATED_AT: &str = "createdAt";
const ALIVE: &str = "alive";

/// Why a document could not be read or changed: damaged bytes, or a document whose
/// shape is not a note's (e.g. `body` is not text).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DocError(String);

impl From<automerge::AutomergeError> for DocError {
    fn from(e: automerge::AutomergeError) -> Self {
        Self(e.to_string())
    }
}

pub(crate) struct NoteDoc {
    doc: AutoCommit,
}

impl NoteDoc {
    /// A new note written by `actor`; returns it and the bytes of its first change.
    pub(crate) fn create(
        actor: &ActorId,
        body: &str,
        created_at: &str,
    ) -> Result<(Self, Vec<u8>), DocError> {
        let mut doc = AutoCommit::new().with_actor(actor.clone());
        let text = doc.put_object(ROOT, BODY, ObjType::Text)?;
        doc.update_text(&text, body)?;
        doc.put(ROOT, CREATED_AT, created_at)?;
        doc.put(ROOT, ALIVE, true)?;
        let change = doc.save_incremental();
        Ok((Self { doc }, change))
    }

    /// An empty document, for a record first met in a pull.
    pub(crate) fn empty() -> Self {
        Self {
            doc: AutoCommit::new(),
        }
    }

    pub(crate) fn load(bytes: &[u8]) -> Result<Self, DocError> {
        Ok(Self {
            doc: AutoCommit::load(bytes)?,
        })
    }

    /// Folds in changes from elsewhere (incremental changes or a whole save);
    /// changes already held are ignored, so applying twice is harmless.
    pub(crate) fn apply(&mut self, change: &[u8]) -> Result<(), DocError> {
        self.doc.load_incremental(change)?;
        Ok(())
    }

    fn body_obj(&self) -> Result<Option<ObjId>, DocError> {
        match self.doc.get(ROOT, BODY)? {
            Some((Value::Object(ObjType::Text), id)) => Ok(Some(id)),
            Some(_) => Err(DocError("the note's body is not text".into())),
            None => Ok(None),
        }
    }

    /// Replaces the body by `actor`, as the diff of old and new text (so a concurrent
    /// edit elsewhere keeps its characters); returns the change's bytes.
    pub(crate) fn edit(&mut self, actor: &ActorId, body: &str) -> Result<Vec<u8>, DocError> {
        let before = self.doc.get_heads();
        self.doc.set_actor(actor.clone());
        let text = match self.body_obj()? {
            Some(t) => t,
            None => self.doc.put_object(ROOT, BODY, ObjType::Text)?,
        };
        self.doc.update_text(&text, body)?;
        // Automerge drops a put of the value a key already holds, and then this edit
        // would not vote for `alive` against a concurrent delete. Deleting the key
        // first makes the put a fresh op every time.
        self.doc.delete(ROOT, ALIVE)?;
        self.doc.put(ROOT, ALIVE, true)?;
        Ok(self.doc.save_after(&before))
    }

    /// Marks the note deleted by `actor`; returns the change's bytes.
    pub(crate) fn delete(&mut self, actor: &ActorId) -> Result<Vec<u8>, DocError> {
        let before = self.doc.get_heads();
        self.doc.set_actor(actor.clone());
        self.doc.put(ROOT, ALIVE, false)?;
        Ok(self.doc.save_after(&before))
    }

    pub(crate) fn body(&self) -> Result<String, DocError> {
        match self.body_obj()? {
            Some(t) => Ok(self.doc.text(&t)?),
            None => Ok(String::new()),
        }
    }

    pub(crate) fn created_at(&self) -> Result<Option<String>, DocError> {
        Ok(match self.doc.get(ROOT, CREATED_AT)? {
            Some((Value::Scalar(s), _)) => s.as_str().map(str::to_owned),
            _ => None,
        })
    }

    /// Alive if any of the concurrent values of `alive` is true: an edit concurrent
    /// with a delete keeps the note. A document without `alive` (its first change
    /// not yet here) is not shown.
    pub(crate) fn alive(&self) -> Result<bool, DocError> {
        Ok(self
            .doc
            .get_all(ROOT, ALIVE)?
            .iter()
            .any(|(v, _)| matches!(v, Value::Scalar(s) if s.as_bool() == Some(true))))
    }

    /// The whole document (what `records.doc` keeps and a snapshot pushes).
    pub(crate) fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fork(doc: &mut NoteDoc) -> NoteDoc {
        NoteDoc::load(&doc.save()).unwrap()
    }

    #[test]
    fn concurrent_edits_keep_both_insertions() {
        let (a_actor, b_actor) = (ActorId::random(), ActorId::random());
        let (mut a, first) =
            NoteDoc::create(&a_actor, "hello world", "2026-12-01T00:00:00.000Z").unwrap();
        let mut b = NoteDoc::empty();
        b.apply(&first).unwrap();
        let ca = a.edit(&a_actor, "hello big world").unwrap();
        let cb = b.edit(&b_actor, "hello world again").unwrap();
        a.apply(&cb).unwrap();
        b.apply(&ca).unwrap();
        assert_eq!(a.body().unwrap(), "hello big world again");
        assert_eq!(b.body().unwrap(), a.body().unwrap());
        // Applying the same change twice changes nothing.
        a.apply(&cb).unwrap();
        assert_eq!(a.body().unwrap(), "hello big world again");
        assert_eq!(
            a.created_at().unwrap().as_deref(),
            Some("2026-12-01T00:00:00.000Z")
        );
    }

    #[test]
    fn an_edit_beats_a_concurrent_delete_but_not_a_later_one() {
        let (a_actor, b_actor) = (ActorId::random(), ActorId::random());
        let (mut a, _) = NoteDoc::create(&a_actor, "keep me", "t").unwrap();
        let mut b = fork(&mut a);
        let del = a.delete(&a_actor).unwrap();
        assert!(!a.alive().unwrap());
        let edit = b.edit(&b_actor, "keep me, edited").unwrap();
        a.apply(&edit).unwrap();
        b.apply(&del).unwrap();
        assert!(a.alive().unwrap() && b.alive().unwrap());
        assert_eq!(a.body().unwrap(), "keep me, edited");
        // A delete that saw the edit wins on both.
        let later = b.delete(&b_actor).unwrap();
        a.apply(&later).unwrap();
        assert!(!a.alive().unwrap() && !b.alive().unwrap());
    }

    #[test]
    fn unknown_root_fields_survive_an_edit() {
        let actor = ActorId::random();
        let (mut a, _) = NoteDoc::create(&actor, "x", "t").unwrap();
        // A newer app adds a field this one does not know.
        let mut newer = AutoCommit::load(&a.save())
            .unwrap()
            .with_actor(ActorId::random());
        newer.put(ROOT, "pinned", true).unwrap();
        let mut a = NoteDoc::load(&newer.save()).unwrap();
        a.edit(&actor, "y").unwrap();
        let back = AutoCommit::load(&a.save()).unwrap();
        assert!(back.get(ROOT, "pinned").unwrap().is_some());
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        assert!(NoteDoc::load(b"not automerge").is_err());
        assert!(NoteDoc::empty().apply(b"\x85\x6f\x4a\x83garbage").is_err());
    }
}
