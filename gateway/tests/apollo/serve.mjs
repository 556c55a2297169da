// Serves a supergraph with Apollo's @apollo/gateway behind Apollo Server, at
// http://$HOST:$PORT/graphql (any path is answered). Used as a peer by `scripts/bench gateway`
// and as the reference gateway of the differential test.
//
// Environment: SUPERGRAPH_FILE_PATH (required), PORT (default 4000), HOST (default 127.0.0.1).
import { readFileSync } from 'node:fs';
import { ApolloGateway } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';

const path = process.env.SUPERGRAPH_FILE_PATH;
if (!path) {
  console.error('SUPERGRAPH_FILE_PATH is required');
  process.exit(2);
}
const quiet = { debug() {}, info() {}, warn: console.error, error: console.error };
const gateway = new ApolloGateway({ supergraphSdl: readFileSync(path, 'utf8'), logger: quiet });
const server = new ApolloServer({ gateway, logger: quiet, csrfPrevention: false });
const { url } = await startStandaloneServer(server, {
  listen: { port: Number(process.env.PORT ?? 4000), host: process.env.HOST ?? '127.0.0.1' },
});
console.error(`apollo gateway ready at ${url}`);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, async () => {
    await server.stop();
    process.exit(0);
  });
}
