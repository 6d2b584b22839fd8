// notes-js: a minimal tenant plugin in JavaScript. GET /notes lists the tenant's notes,
// POST /notes adds one. tenant() is bound by the host to the request's tenant: two tenants
// never see each other's notes. Walkthrough: examples/README.md, docs/PLUGINS-JS.md.
import { exportPlugin, HttpError, Response, Router, tenant } from "polymongo-guest";

const notes = () => tenant().collection("notes");

const router = new Router()
  .get("/notes", () => {
    const all = notes().find({}, { projection: { _id: 0 } }).limit(50).toArray();
    return Response.json(200, all);
  })
  .post("/notes", (req) => {
    const { text } = req.json();
    if (typeof text !== "string") throw new HttpError(400, "text must be a string");
    notes().insertOne({ text });
    return Response.json(201, { text });
  });

export const handler = exportPlugin((req) => router.handle(req));
