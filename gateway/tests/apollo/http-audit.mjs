// Runs the GraphQL-over-HTTP conformance audits of `graphql-http` against a server URL and
// prints one JSON line per audit: {"id", "name", "status", "reason"}.
//
//   node http-audit.mjs http://127.0.0.1:PORT/graphql
import { auditServer } from "graphql-http";

const url = process.argv[2];
if (!url) {
  console.error("usage: node http-audit.mjs URL");
  process.exit(2);
}
const results = await auditServer({ url });
for (const result of results) {
  console.log(
    JSON.stringify({
      id: result.id,
      name: result.name,
      status: result.status,
      reason: result.status === "ok" ? null : result.reason,
    }),
  );
}
