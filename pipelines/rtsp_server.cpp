/* SPDX-License-Identifier: MIT */
// autoassign-rtsp-server: serves rtsp://ADDRESS:PORT/annotated, the live detection + overlay
// of a source (a URI, a V4L2 device, or a test pattern), H.264 over RTP, for any RTSP client.
// One shared pipeline (one loaded model) serves every client.
//
//   autoassign-rtsp-server --model model/zoo/face-rt.pt --source rtsp://camera/stream
//   autoassign-rtsp-server --model face-rt.pt --source /dev/video0 --port 8554
//   gst-launch-1.0 rtspsrc location=rtsp://127.0.0.1:8554/annotated ! decodebin ! autovideosink
#include <glib-unix.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

#include "options.h"
#include "plugin.h"

namespace {

// SIGINT/SIGTERM arrive through GLib's signal source (g_unix_signal_add), so the quit runs
// in the main loop: a plain signal handler may not call g_main_loop_quit (not
// async-signal-safe; it crashed about one exit in four with a client attached).
gboolean on_quit_signal(gpointer loop) {
  g_main_loop_quit(static_cast<GMainLoop*>(loop));
  return G_SOURCE_CONTINUE;  // a second Ctrl-C during teardown is ignored, not fatal
}

// Every media the factory built, so that shutdown can unprepare each one (pipeline to NULL,
// the detector's worker joined, the model released) before the process exits.
void on_media_constructed(GstRTSPMediaFactory*, GstRTSPMedia* media, gpointer list) {
  static_cast<std::vector<GstRTSPMedia*>*>(list)->push_back(
      static_cast<GstRTSPMedia*>(g_object_ref(media)));
}

GstRTSPFilterResult remove_client(GstRTSPServer*, GstRTSPClient*, gpointer) {
  return GST_RTSP_FILTER_REMOVE;
}

struct Options {
  std::string model, source = "test", address = "127.0.0.1", mount = "/annotated";
  int port = 8554;
  double threshold = 0.5;
  int bitrate = 2000;
  std::string precision = "auto";
};

using autoassign::pipelines::quote;

std::string source_description(const std::string& source) {
  if (source == "test") return "videotestsrc is-live=true pattern=ball";
  if (source.rfind("/dev/", 0) == 0) return "v4l2src device=" + quote(source);
  if (source.find("://") == std::string::npos) {
    gchar* uri = gst_filename_to_uri(source.c_str(), nullptr);
    std::string s = "uridecodebin uri=" + quote(uri ? uri : source);
    g_free(uri);
    return s;
  }
  return "uridecodebin uri=" + quote(source);
}

const char* kUsage =
    "usage: autoassign-rtsp-server [--model MODEL] [options]\n"
    "Serves the annotated video of one source as RTSP (H.264), the model drawn on it.\n";

}  // namespace

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  autoassign_gst_register_static();
  Options o;
  autoassign::pipelines::Options cli(kUsage);
  cli.model(&o.model);
  cli.value("--source", &o.source, "URI|FILE|/dev/videoN|test",
            "what to annotate (default test: a pattern)");
  cli.value("--address", &o.address, "A", "address to listen on (default 127.0.0.1)");
  cli.value("--port", &o.port, "N", "port to listen on (default 8554; 0: any free port)", 0, 65535);
  cli.value("--mount", &o.mount, "/PATH", "the stream's path (default /annotated)");
  cli.value("--threshold", &o.threshold, "T", "score threshold (default 0.5)", 0, 1);
  cli.value("--bitrate", &o.bitrate, "KBITS", "H.264 bitrate in kbit/s (default 2000)", 16, 100000);
  cli.value(autoassign::kPrecisionOption, &o.precision);
  if (const int status = cli.parse(argc, argv); status >= 0) return status;
  if (o.mount.empty() || o.mount[0] != '/') return cli.fail("--mount must start with '/'");
  // A URI whose scheme no installed GStreamer source handles would only give clients a 503.
  if (const auto colon = o.source.find("://"); colon != std::string::npos) {
    const std::string scheme = o.source.substr(0, colon);
    if (!gst_uri_is_valid(o.source.c_str()) ||
        !gst_uri_protocol_is_supported(GST_URI_SRC, scheme.c_str())) {
      return cli.fail("--source " + o.source + ": no installed GStreamer source handles '" +
                      scheme + "://'");
    }
  }
  // drop-when-busy: a live source must never queue behind inference.
  const std::string launch =
      "( " + source_description(o.source) +
      " ! videoconvert ! video/x-raw,format=NV12 ! autoassigndetect drop-when-busy=true "
      "threshold=" +
      std::to_string(o.threshold) + " precision=" + quote(o.precision) +
      " model-file=" + quote(o.model) +
      " ! autoassignoverlay ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast "
      "bitrate=" +
      std::to_string(o.bitrate) +
      " key-int-max=30 ! rtph264pay name=pay0 pt=96 config-interval=1 )";
  GstRTSPServer* server = gst_rtsp_server_new();
  gst_rtsp_server_set_address(server, o.address.c_str());
  gst_rtsp_server_set_service(server, std::to_string(o.port).c_str());
  GstRTSPMediaFactory* factory = gst_rtsp_media_factory_new();
  gst_rtsp_media_factory_set_launch(factory, launch.c_str());
  gst_rtsp_media_factory_set_shared(factory, TRUE);
  std::vector<GstRTSPMedia*> medias;
  g_signal_connect(factory, "media-constructed", G_CALLBACK(on_media_constructed), &medias);
  GstRTSPMountPoints* mounts = gst_rtsp_server_get_mount_points(server);
  g_object_ref(factory);  // the mount points take one reference; shutdown keeps its own
  gst_rtsp_mount_points_add_factory(mounts, o.mount.c_str(), factory);
  g_object_unref(mounts);
  const guint server_source = gst_rtsp_server_attach(server, nullptr);
  if (server_source == 0) {
    std::fprintf(stderr, "cannot listen on %s:%d\n", o.address.c_str(), o.port);
    return 1;
  }
  // The port it listens on, which --port 0 leaves to the system.
  std::printf("serving rtsp://%s:%d%s\n", o.address.c_str(), gst_rtsp_server_get_bound_port(server),
              o.mount.c_str());
  std::fflush(stdout);
  GMainLoop* loop = g_main_loop_new(nullptr, FALSE);
  const guint sigint = g_unix_signal_add(SIGINT, on_quit_signal, loop);
  const guint sigterm = g_unix_signal_add(SIGTERM, on_quit_signal, loop);
  g_main_loop_run(loop);
  // Orderly teardown: stop accepting, close the clients, unprepare every media (its pipeline
  // goes to NULL, which stops the detector's worker and drops the model), then free the rest.
  std::printf("shutting down\n");
  std::fflush(stdout);
  g_source_remove(server_source);
  gst_rtsp_server_client_filter(server, remove_client, nullptr);
  GstRTSPMountPoints* mp = gst_rtsp_server_get_mount_points(server);
  gst_rtsp_mount_points_remove_factory(mp, o.mount.c_str());
  g_object_unref(mp);
  for (GstRTSPMedia* media : medias) {
    gst_rtsp_media_unprepare(media);
    g_object_unref(media);
  }
  medias.clear();
  // Let the sources the teardown queued (client and media finalisation) run.
  while (g_main_context_iteration(nullptr, FALSE)) {
  }
  g_source_remove(sigint);
  g_source_remove(sigterm);
  g_main_loop_unref(loop);
  g_object_unref(factory);
  g_object_unref(server);
  return 0;
}
