//! Prepared-statement inserts straight through SQLite's C API, for ingestion's hot path.
//!
//! sqlx runs each statement on its worker thread and copies every bound value; for a million-line import
//! that costs more than SQLite's own work. sqlx documents the escape hatch used here: `lock_handle()` lends
//! the connection's raw handle to this thread while the worker is parked. Statements are prepared once per
//! chunk, bound without copying (`SQLITE_STATIC`: each value outlives the `step` that reads it), stepped,
//! reset, and finalized when dropped. All `unsafe` of the store lives in this file.

use std::ffi::{CStr, CString, c_int};
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;

use super::StoreError;

fn error(db: NonNull<ffi::sqlite3>, code: c_int, context: &str) -> StoreError {
    // SAFETY: `db` is a live connection handle lent by sqlx for the duration of the caller's borrow;
    // sqlite3_errmsg returns a NUL-terminated string owned by SQLite, copied out immediately.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }
        .to_string_lossy()
        .into_owned();
    StoreError::Sqlite {
        code,
        message: format!("{context}: {message}"),
    }
}

/// A value to bind; borrowed values must stay alive until the statement is stepped.
pub enum Val<'a> {
    Int(i64),
    Real(f64),
    Text(&'a str),
    Null,
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<Option<i64>> for Val<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::Null, Val::Int)
    }
}
impl From<Option<f64>> for Val<'_> {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Val::Null, Val::Real)
    }
}
impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(v)
    }
}
impl<'a> From<Option<&'a str>> for Val<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Val::Null, Val::Text)
    }
}

/// One prepared statement on a lent connection.
pub struct Stmt {
    db: NonNull<ffi::sqlite3>,
    raw: NonNull<ffi::sqlite3_stmt>,
    sql: &'static str,
}

impl Stmt {
    /// # Safety
    /// `db` must be a live connection that no other thread uses while this statement exists (hold sqlx's
    /// `LockedSqliteHandle` for the statement's whole life).
    pub unsafe fn prepare(
        db: NonNull<ffi::sqlite3>,
        sql: &'static str,
    ) -> Result<Self, StoreError> {
        let c = CString::new(sql).expect("SQL has no NUL");
        let mut raw = ptr::null_mut();
        // SAFETY: the caller guarantees `db`; `c` is NUL-terminated and outlives the call.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db.as_ptr(),
                c.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut raw,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc, sql));
        }
        let raw = NonNull::new(raw).ok_or_else(|| StoreError::Sqlite {
            code: rc,
            message: format!("{sql}: empty statement"),
        })?;
        Ok(Self { db, raw, sql })
    }

    /// Binds `values` to ?1..?n, runs the statement to completion and resets it. Returns the number of
    /// rows it changed (0 when `ON CONFLICT DO NOTHING` skipped the row).
    pub fn run(&mut self, values: &[Val<'_>]) -> Result<usize, StoreError> {
        let s = self.raw.as_ptr();
        self.bind(values)?;
        // SAFETY: as in `bind`; step/reset/clear_bindings on our own live statement.
        let rc = unsafe { ffi::sqlite3_step(s) };
        let result = if rc == ffi::SQLITE_DONE || rc == ffi::SQLITE_ROW {
            // SAFETY: `db` is live (see `prepare`).
            Ok(unsafe { ffi::sqlite3_changes(self.db.as_ptr()) } as usize)
        } else {
            Err(self.fail(rc))
        };
        // SAFETY: our own live statement.
        unsafe {
            ffi::sqlite3_reset(s);
            ffi::sqlite3_clear_bindings(s);
        }
        result
    }

    /// Binds `values` to ?1..?n. Borrowed text is bound as SQLITE_STATIC: callers step the statement and
    /// clear the bindings before `values` can go out of scope.
    fn bind(&mut self, values: &[Val<'_>]) -> Result<(), StoreError> {
        let s = self.raw.as_ptr();
        for (i, v) in values.iter().enumerate() {
            let idx = (i + 1) as c_int;
            // SAFETY: `s` is a live prepared statement (we own it); text pointers are valid for `len`
            // bytes and, bound as SQLITE_STATIC, are only read by the caller's sqlite3_step, before
            // `values` can go out of scope; the caller clears the bindings right after.
            let rc = unsafe {
                match v {
                    Val::Int(n) => ffi::sqlite3_bind_int64(s, idx, *n),
                    Val::Real(x) => ffi::sqlite3_bind_double(s, idx, *x),
                    Val::Null => ffi::sqlite3_bind_null(s, idx),
                    Val::Text(t) => ffi::sqlite3_bind_text(
                        s,
                        idx,
                        t.as_ptr().cast(),
                        t.len() as c_int,
                        ffi::SQLITE_STATIC(),
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(self.fail(rc));
            }
        }
        Ok(())
    }

    /// Binds `values`, steps once and returns the first column of the first row, if any.
    pub fn query_i64(&mut self, values: &[Val<'_>]) -> Result<Option<i64>, StoreError> {
        let s = self.raw.as_ptr();
        self.bind(values)?;
        // SAFETY: our own live statement; column 0 is read only while the statement is on a row.
        let rc = unsafe { ffi::sqlite3_step(s) };
        let result = match rc {
            ffi::SQLITE_ROW => Ok(Some(unsafe { ffi::sqlite3_column_int64(s, 0) })),
            ffi::SQLITE_DONE => Ok(None),
            _ => Err(self.fail(rc)),
        };
        // SAFETY: our own live statement.
        unsafe {
            ffi::sqlite3_reset(s);
            ffi::sqlite3_clear_bindings(s);
        }
        result
    }

    fn fail(&self, rc: c_int) -> StoreError {
        error(self.db, rc, self.sql)
    }
}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: finalizing our own statement exactly once; the connection is still lent to us.
        unsafe {
            ffi::sqlite3_finalize(self.raw.as_ptr());
        }
    }
}
