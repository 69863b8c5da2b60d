#include "shim.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>
#include <opencv2/videoio.hpp>
#include <vector>

namespace {

void set_err(char *err, int errlen, const char *msg) {
    if (err == nullptr || errlen <= 0) {
        return;
    }
    std::strncpy(err, msg, errlen - 1);
    err[errlen - 1] = '\0';
}

}  // namespace

// cc_yunet runs a YuNet model of the 2021-2022 "loc, conf, iou" kind with
// cv::dnn and decodes it as OpenCV 4.6's cv::FaceDetectorYN does (same
// priors, variances, score and NMS), with one difference: FaceDetectorYN
// reads conf as probabilities, but the models exported by
// libfacedetection.train end without a Softmax, so their conf is two logits
// (background, face). Here a conf row that is not already a probability pair
// goes through a softmax first; with the raw logits FaceDetectorYN reports
// scores above 1 for real faces and dozens of phantom boxes.
struct cc_yunet {
    cv::dnn::Net net;
    cv::Size size;
    float score, nms;
    int top_k;
    std::vector<cv::Rect2f> priors;  // centre x, y and size, as fractions of the input
    cv::Mat input;                   // the frame resized to the model's input, reused
    std::vector<float> faces;        // the last detection, CC_YUNET_FACE_FLOATS per face
};

namespace {

void yunet_priors(cc_yunet *y) {
    const int w = y->size.width, h = y->size.height;
    // Feature maps at strides 8, 16, 32 and 64, rounded as FaceDetectorYN does.
    cv::Size fm(int(int((w + 1) / 2) / 2), int(int((h + 1) / 2) / 2));
    const float min_sizes[4][3] = {{10, 16, 24}, {32, 48, 0}, {64, 96, 0}, {128, 192, 256}};
    const int steps[4] = {8, 16, 32, 64};
    y->priors.clear();
    for (int i = 0; i < 4; ++i) {
        fm = cv::Size(fm.width / 2, fm.height / 2);
        for (int r = 0; r < fm.height; ++r) {
            for (int c = 0; c < fm.width; ++c) {
                for (int j = 0; j < 3 && min_sizes[i][j] > 0; ++j) {
                    y->priors.push_back(cv::Rect2f((c + 0.5f) * steps[i] / w, (r + 0.5f) * steps[i] / h,
                                                   min_sizes[i][j] / w, min_sizes[i][j] / h));
                }
            }
        }
    }
}

}  // namespace

struct cc_cascade {
    cv::CascadeClassifier cc;
    cv::Mat gray;  // reused
    std::vector<cv::Rect> faces;
};

struct cc_capture {
    cv::VideoCapture cap;
};

extern "C" {

cc_yunet *cc_yunet_new(const char *model, int width, int height, float score,
                       float nms, int top_k, char *err, int errlen) {
    try {
        cv::dnn::Net net = cv::dnn::readNet(model);
        if (net.empty()) {
            set_err(err, errlen, "cv::dnn::readNet returned an empty network");
            return nullptr;
        }
        cc_yunet *y = new cc_yunet;
        y->net = net;
        y->size = cv::Size(width, height);
        y->score = score;
        y->nms = nms;
        y->top_k = top_k;
        yunet_priors(y);
        return y;
    } catch (const std::exception &e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return nullptr;
}

int cc_yunet_detect(cc_yunet *y, void *bgr, char *err, int errlen) {
    try {
        const cv::Mat &img = *static_cast<cv::Mat *>(bgr);
        if (img.empty() || img.type() != CV_8UC3) {
            set_err(err, errlen, "the image must be a non-empty 8-bit BGR image");
            return -1;
        }
        cv::resize(img, y->input, y->size, 0, 0, cv::INTER_LINEAR);
        y->net.setInput(cv::dnn::blobFromImage(y->input));
        std::vector<cv::Mat> out;
        y->net.forward(out, std::vector<cv::String>{"loc", "conf", "iou"});
        const size_t n = y->priors.size();
        if (out.size() != 3 || out[0].total() != n * 14 || out[1].total() != n * 2 ||
            out[2].total() != n || out[0].type() != CV_32F || out[1].type() != CV_32F ||
            out[2].type() != CV_32F) {
            set_err(err, errlen, "the model's outputs are not YuNet's loc, conf and iou for this input size");
            return -1;
        }
        const float *loc = out[0].ptr<float>(), *conf = out[1].ptr<float>(), *iou = out[2].ptr<float>();
        const float var0 = 0.1f, var1 = 0.2f;
        const float w = float(y->size.width), h = float(y->size.height);
        std::vector<float> cand;  // the decoded candidates, CC_YUNET_FACE_FLOATS each
        std::vector<cv::Rect2i> boxes;
        std::vector<float> scores;
        for (size_t i = 0; i < n; ++i) {
            float bg = conf[2 * i], fg = conf[2 * i + 1];
            bool probs = bg >= 0 && fg >= 0 && std::fabs(bg + fg - 1) < 1e-3f;
            float cls = probs ? fg : 1 / (1 + std::exp(bg - fg));
            float score = std::sqrt(cls * std::min(std::max(iou[i], 0.f), 1.f));
            if (!(score >= y->score)) {
                continue;
            }
            const cv::Rect2f &p = y->priors[i];
            const float *l = loc + 14 * i;
            float cx = (p.x + l[0] * var0 * p.width) * w;
            float cy = (p.y + l[1] * var0 * p.height) * h;
            float bw = p.width * std::exp(l[2] * var0) * w;
            float bh = p.height * std::exp(l[3] * var1) * h;
            float f[CC_YUNET_FACE_FLOATS] = {cx - bw / 2, cy - bh / 2, bw, bh};
            for (int m = 0; m < 5; ++m) {
                f[4 + 2 * m] = (p.x + l[4 + 2 * m] * var0 * p.width) * w;
                f[5 + 2 * m] = (p.y + l[5 + 2 * m] * var0 * p.height) * h;
            }
            f[14] = score;
            cand.insert(cand.end(), f, f + CC_YUNET_FACE_FLOATS);
            boxes.push_back(cv::Rect2i(int(f[0]), int(f[1]), int(bw), int(bh)));
            scores.push_back(score);
        }
        std::vector<int> keep;
        cv::dnn::NMSBoxes(boxes, scores, y->score, y->nms, keep, 1.f, y->top_k);
        y->faces.clear();
        for (int k : keep) {
            y->faces.insert(y->faces.end(), cand.begin() + k * CC_YUNET_FACE_FLOATS,
                            cand.begin() + (k + 1) * CC_YUNET_FACE_FLOATS);
        }
        return int(keep.size());
    } catch (const std::exception &e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return -1;
}

void cc_yunet_faces(cc_yunet *y, float *out, int n) {
    n = std::min(n, int(y->faces.size() / CC_YUNET_FACE_FLOATS));
    if (n > 0) {
        std::memcpy(out, y->faces.data(), sizeof(float) * n * CC_YUNET_FACE_FLOATS);
    }
}

void cc_yunet_free(cc_yunet *y) { delete y; }

cc_cascade *cc_cascade_new(const char *path, char *err, int errlen) {
    try {
        cc_cascade *c = new cc_cascade;
        if (!c->cc.load(path)) {
            delete c;
            set_err(err, errlen, "OpenCV could not load it as a cascade classifier");
            return nullptr;
        }
        return c;
    } catch (const std::exception &e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return nullptr;
}

int cc_cascade_detect(cc_cascade *c, void *bgr, int min_size, double scale,
                      int neighbors, char *err, int errlen) {
    try {
        const cv::Mat &img = *static_cast<cv::Mat *>(bgr);
        if (img.empty() || img.type() != CV_8UC3) {
            set_err(err, errlen, "the image must be a non-empty 8-bit BGR image");
            return -1;
        }
        cv::cvtColor(img, c->gray, cv::COLOR_BGR2GRAY);
        cv::equalizeHist(c->gray, c->gray);
        c->faces.clear();
        c->cc.detectMultiScale(c->gray, c->faces, scale, neighbors, 0, cv::Size(min_size, min_size));
        return int(c->faces.size());
    } catch (const std::exception &e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return -1;
}

void cc_cascade_faces(cc_cascade *c, int *out, int n) {
    n = std::min(n, int(c->faces.size()));
    for (int i = 0; i < n; ++i) {
        const cv::Rect &r = c->faces[i];
        out[4 * i] = r.x;
        out[4 * i + 1] = r.y;
        out[4 * i + 2] = r.width;
        out[4 * i + 3] = r.height;
    }
}

void cc_cascade_free(cc_cascade *c) { delete c; }

cc_capture *cc_capture_open(const char *url, int index, int api, int open_ms,
                            int read_ms, char *err, int errlen) {
    try {
        std::vector<int> params;
        if (open_ms > 0) {
            params.push_back(cv::CAP_PROP_OPEN_TIMEOUT_MSEC);
            params.push_back(open_ms);
        }
        if (read_ms > 0) {
            params.push_back(cv::CAP_PROP_READ_TIMEOUT_MSEC);
            params.push_back(read_ms);
        }
        cc_capture *c = new cc_capture;
        bool ok = url != nullptr ? c->cap.open(url, api, params) : c->cap.open(index, api, params);
        if (!ok || !c->cap.isOpened()) {
            delete c;
            set_err(err, errlen, "OpenCV could not open it");
            return nullptr;
        }
        return c;
    } catch (const std::exception &e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return nullptr;
}

int cc_capture_read(cc_capture *c, void *dst, char *err, int errlen) {
    try {
        return c->cap.read(*static_cast<cv::Mat *>(dst)) ? 1 : 0;
    } catch (const std::exception &e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return -1;
}

double cc_capture_fps(cc_capture *c) { return c->cap.get(cv::CAP_PROP_FPS); }

void cc_capture_free(cc_capture *c) { delete c; }

void cc_set_num_threads(int n) { cv::setNumThreads(n); }

}  // extern "C"
