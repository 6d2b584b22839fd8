//! `notes`: a minimal tenant plugin in Rust. `GET /notes` lists the tenant's notes, `POST
//! /notes` adds one. The host binds `Db::tenant()` to the request's tenant: two tenants never
//! see each other's notes. Walkthrough: examples/README.md, docs/PLUGINS-RUST.md.

use polymongo_guest::bson::doc;
use polymongo_guest::{export_plugin, Db, Plugin, Request, Response, Router};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Note {
    text: String,
}

struct Notes;

impl Plugin for Notes {
    fn handle(req: Request) -> Response {
        Router::new()
            .get("/notes", |_req, _params| {
                let notes = Db::tenant().collection::<Note>("notes");
                match notes
                    .find(doc! {})
                    .projection(doc! { "_id": 0 })
                    .limit(50)
                    .all()
                {
                    Ok(all) => Response::json(200, &all),
                    Err(e) => e.into(),
                }
            })
            .post("/notes", |req, _params| {
                let note: Note = match req.json() {
                    Ok(note) => note,
                    Err(bad_request) => return bad_request,
                };
                match Db::tenant().collection::<Note>("notes").insert_one(&note) {
                    Ok(_id) => Response::json(201, &note),
                    Err(e) => e.into(),
                }
            })
            .handle(&req)
    }
}

export_plugin!(Notes);
