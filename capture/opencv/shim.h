// C interface to the OpenCV C++ API that gocv v0.31.0 lacks or wraps
// unsafely: YuNet run with cv::dnn and decoded as cv::FaceDetectorYN does,
// cascade classifiers, cv::VideoCapture opened with timeouts, and the size
// of OpenCV's thread pool. Errors are written to err (errlen bytes) and signalled
// by a NULL or negative result; no C++ exception crosses into Go.
#ifndef CONSENTCAM_SHIM_H
#define CONSENTCAM_SHIM_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cc_yunet cc_yunet;
typedef struct cc_cascade cc_cascade;
typedef struct cc_capture cc_capture;

// The number of floats per face in cc_yunet_faces: x, y, w, h, five
// landmarks (x, y) and the score, in the model's input coordinates.
enum { CC_YUNET_FACE_FLOATS = 15 };

cc_yunet *cc_yunet_new(const char *model, int width, int height, float score,
                       float nms, int top_k, char *err, int errlen);
// cc_yunet_detect resizes the BGR image (a cv::Mat*) to the model's input and
// runs the detector: the number of faces found, or -1 on error.
int cc_yunet_detect(cc_yunet *y, void *bgr, char *err, int errlen);
// cc_yunet_faces copies the first n faces of the last detection into out
// (n * CC_YUNET_FACE_FLOATS floats).
void cc_yunet_faces(cc_yunet *y, float *out, int n);
void cc_yunet_free(cc_yunet *y);

// cc_cascade_new loads a cascade classifier (gocv's Load lets OpenCV's
// exception on a malformed file abort the process).
cc_cascade *cc_cascade_new(const char *path, char *err, int errlen);
// cc_cascade_detect runs the cascade on the histogram-equalised gray image
// of bgr (a cv::Mat*): the number of faces found, or -1 on error.
int cc_cascade_detect(cc_cascade *c, void *bgr, int min_size, double scale,
                      int neighbors, char *err, int errlen);
// cc_cascade_faces copies the first n faces of the last detection into out
// as x, y, w, h.
void cc_cascade_faces(cc_cascade *c, int *out, int n);
void cc_cascade_free(cc_cascade *c);

// cc_capture_open opens url with the given cv::VideoCaptureAPIs backend, or
// device index when url is NULL. The timeouts apply to the FFmpeg backend;
// 0 leaves OpenCV's default.
cc_capture *cc_capture_open(const char *url, int index, int api, int open_ms,
                            int read_ms, char *err, int errlen);
// cc_capture_read reads the next frame into dst (a cv::Mat*): 1 when a frame
// was read, 0 when there is none (end or failure), -1 on error.
int cc_capture_read(cc_capture *c, void *dst, char *err, int errlen);
double cc_capture_fps(cc_capture *c);
void cc_capture_free(cc_capture *c);

void cc_set_num_threads(int n);

#ifdef __cplusplus
}
#endif

#endif
