// Loads a supergraph into Apollo's gateway; exits non-zero if Apollo rejects it.
// With a query file, also executes the query through Apollo Server + gateway (the subgraphs
// at the supergraph's join__graph URLs must be reachable) and prints the JSON result.
//
// Usage: node check-supergraph.mjs <supergraph-file> [query-file]
import { readFileSync } from 'node:fs';
import { ApolloGateway } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';

const [, , supergraphPath, queryPath] = process.argv;
if (!supergraphPath) {
  console.error('usage: node check-supergraph.mjs <supergraph-file> [query-file]');
  process.exit(2);
}

const supergraphSdl = readFileSync(supergraphPath, 'utf8');
const quiet = { debug() {}, info() {}, warn: console.error, error: console.error };

try {
  if (!queryPath) {
    const gateway = new ApolloGateway({ supergraphSdl, logger: quiet });
    await gateway.load();
    await gateway.stop();
    console.log('ok: @apollo/gateway accepted the supergraph');
  } else {
    const query = readFileSync(queryPath, 'utf8');
    const gateway = new ApolloGateway({ supergraphSdl, logger: quiet });
    const server = new ApolloServer({ gateway, logger: quiet });
    await server.start();
    const response = await server.executeOperation({ query });
    await server.stop();
    if (response.body.kind !== 'single') {
      throw new Error(`unexpected response kind ${response.body.kind}`);
    }
    console.log(JSON.stringify(response.body.singleResult));
  }
  process.exit(0);
} catch (error) {
  console.error('@apollo/gateway rejected the supergraph or failed to execute:');
  console.error(error && error.stack ? error.stack : String(error));
  if (error && Array.isArray(error.causes)) {
    for (const cause of error.causes) console.error(' -', cause.message ?? String(cause));
  }
  process.exit(1);
}
