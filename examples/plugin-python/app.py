"""notes-py: a minimal tenant plugin in Python.

GET /notes lists the tenant's notes, POST /notes adds one. tenant() is bound by the host to
the request's tenant: two tenants never see each other's notes. Walkthrough:
examples/README.md, docs/PLUGINS-PYTHON.md.
"""

from polymongo_guest import HttpError, Plugin, Request, Response, Router, tenant

router = Router()


@router.get("/notes")
def list_notes(req: Request, params: dict[str, str]) -> Response:
    notes = tenant().collection("notes").find({}, projection={"_id": 0}, limit=50)
    return Response.json(200, notes.to_list())


@router.post("/notes")
def create_note(req: Request, params: dict[str, str]) -> Response:
    body = req.json()
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str):
        raise HttpError(400, "text must be a string")
    tenant().collection("notes").insert_one({"text": text})
    return Response.json(201, {"text": text})


class Handler(Plugin):
    def serve(self, req: Request) -> Response:
        return router.handle(req)
