import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.net.InetSocketAddress;
import java.util.List;

/**
 * Starts mongo-java-server (in-memory backend, oplog on, so change streams work) for polymongo's
 * tests: {@code java PolymongoMjs [host] [port] [wire-version]}. Port 0 picks a free one. Prints
 * {@code polymongo-mjs listening on HOST:PORT} once bound, and stops when its stdin closes (so
 * it never outlives the test process that started it).
 *
 * <p>The server's built-in {@code MONGO_5_0} version advertises wire version 8, below the 9
 * (MongoDB 4.4) that the Rust driver 3.x requires; this launcher reports 5.0.0 with wire
 * version 13 (the real 5.0's) instead.
 */
public final class PolymongoMjs {
    public static void main(String[] args) throws Exception {
        String host = args.length > 0 ? args[0] : "127.0.0.1";
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 0;
        int wire = args.length > 2 ? Integer.parseInt(args[2]) : 13;
        MongoVersion version = new MongoVersion() {
            @Override
            public List<Integer> getVersionArray() {
                return List.of(5, 0, 0);
            }

            @Override
            public int getWireVersion() {
                return wire;
            }
        };
        MemoryBackend backend = new MemoryBackend();
        backend.version(version);
        MongoServer server = new MongoServer(backend);
        server.enableOplog();
        server.bind(host, port);
        InetSocketAddress addr = server.getLocalAddress();
        System.out.println("polymongo-mjs listening on " + addr.getAddress().getHostAddress() + ":" + addr.getPort());
        System.out.flush();
        while (System.in.read() != -1) {
            // Wait for the parent to close stdin (or die).
        }
        server.shutdownNow();
        System.exit(0);
    }
}
