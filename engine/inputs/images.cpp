// Images for every edge: one image or a folder of them, marked or verified in parallel (one
// worker per thread of the backend's pool, each taking whole files), with progress.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "common/thread_pool.hpp"
#include "didmark/error.hpp"
#include "didmark/inputs.hpp"
#include "inputs/inputs_detail.hpp"

namespace didmark::inputs_detail {
namespace {

namespace fs = std::filesystem;

// Run fn(i) for i in [0, n) on up to `workers` threads; the first exception is rethrown.
void for_each_parallel(std::size_t n, int workers, const std::function<void(std::size_t)>& fn) {
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex mu;
  const auto run = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < n;) {
      try {
        fn(i);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  const auto k = static_cast<std::size_t>(std::max(1, workers));
  std::vector<std::thread> threads;
  for (std::size_t t = 1; t < std::min(k, n); ++t) threads.emplace_back(run);
  run();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

ImageMarkOptions mark_options(const InputOptions& o) {
  ImageMarkOptions m = o.image;
  if (o.watermark.strength) m.strength = *o.watermark.strength;
  return m;
}

std::vector<ImageClaim> claims_of(std::span<const Owner> owners) {
  std::vector<ImageClaim> c;
  for (const auto& o : owners) c.push_back({o.key, o.payload});
  return c;
}

Verdict image_verdict(const Owner& owner, double z, double log10_p, const InputOptions& o) {
  Verdict v;
  v.did = owner.did;
  v.z = z;
  v.log10_p = log10_p;
  v.p_value = std::pow(10.0, log10_p);
  v.detected = log10_p <= std::log10(o.watermark.p_threshold);
  v.status = v.detected ? VerdictStatus::detected : VerdictStatus::not_detected;
  v.tensors = 1;
  return v;
}

}  // namespace

void embed_images(const Owner& owner, const InputOptions& o, const InputWriteOptions& w, Backend& backend,
                  InputEmbedReport& r) {
  const auto t0 = std::chrono::steady_clock::now();
  r.backend = backend.description();
  std::error_code ec;
  const bool folder = fs::is_directory(r.input, ec);
  const ImageMarkOptions mo = mark_options(o);
  const ImageClaim claim{owner.key, owner.payload};
  std::vector<fs::path> inputs = folder ? image_folder_files(r.input) : std::vector<fs::path>{r.input};
  r.images.resize(inputs.size());
  if (folder) {
    DIDMARK_EXPECTS(!fs::exists(r.output, ec) || fs::is_directory(r.output, ec), invalid_argument, "output '",
                    r.output.string(), "' is a file; a folder of images is marked into a folder");
    const fs::path in_abs = fs::weakly_canonical(r.input, ec), out_abs = fs::weakly_canonical(r.output, ec);
    DIDMARK_EXPECTS(in_abs != out_abs, invalid_argument, "output folder '", r.output.string(),
                    "' is the input folder: write the marked copies to a new folder");
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    r.images[i].input = inputs[i];
    r.images[i].output = folder ? r.output / fs::relative(inputs[i], r.input, ec) : r.output;
  }
  std::atomic<int64_t> done{0};
  std::mutex progress_mu;
  const auto total = static_cast<int64_t>(inputs.size());
  for_each_parallel(inputs.size(), backend.host_pool().size(), [&](std::size_t i) {
    auto& item = r.images[i];
    try {
      Image img = read_image(item.input);
      item.codec = img.codec;
      item.quality = img.quality;
      item.subsampling = img.subsampling();
      item.icc = !img.icc.empty();
      item.exif = !img.exif.empty();
      item.report = embed_image(img, claim, mo, backend);
      if (folder) {
        std::error_code e2;
        fs::create_directories(item.output.parent_path(), e2);
        DIDMARK_EXPECTS(!e2, io_error, "cannot create folder '", item.output.parent_path().string(), "': ", e2.message());
      }
      write_image(item.output, img, w.overwrite);
    } catch (const Error& e) {
      if (!folder) throw;  // one image: its error is the command's
      item.error_code = std::string(errc_name(e.code()));
      item.error_message = e.what();
    }
    if (o.watermark.progress) {
      const std::lock_guard<std::mutex> lock(progress_mu);
      o.watermark.progress(++done, total);
    }
  });
  int failed = 0;
  for (const auto& item : r.images) {
    if (item.error_code.empty()) {
      r.outputs.push_back(item.output);
    } else {
      ++failed;
      r.warnings.push_back(item.error_message);
    }
  }
  DIDMARK_EXPECTS(!folder || failed < static_cast<int>(r.images.size()) || r.images.empty(), invalid_argument,
                  "no image of '", r.input.string(), "' could be marked (", failed, " refused)");
  DIDMARK_EXPECTS(!r.images.empty(), invalid_argument, "'", r.input.string(), "' holds no .png/.jpg/.jpeg/.webp image");
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void verify_images(const fs::path& path, std::span<const Owner> owners, const InputOptions& o, Backend& backend,
                   FileVerdicts& out) {
  std::error_code ec;
  const bool folder = fs::is_directory(path, ec);
  const std::vector<fs::path> files = folder ? image_folder_files(path) : std::vector<fs::path>{path};
  const std::vector<ImageClaim> claims = claims_of(owners);
  std::vector<ImageScores> scores(files.size());
  std::vector<char> ok(files.size(), 0);
  out.images.resize(files.size());
  std::atomic<int64_t> done{0};
  std::mutex progress_mu;
  std::atomic<uint64_t> bytes{0};
  for_each_parallel(files.size(), backend.host_pool().size(), [&](std::size_t i) {
    ImageItem& item = out.images[i];
    item.path = files[i];
    try {
      const Image img = read_image(files[i], ImageReadOptions{.luminance_only = true});
      std::error_code e2;
      bytes += fs::file_size(files[i], e2);
      item.width = img.width;
      item.height = img.height;
      scores[i] = score_image(img, claims, backend);
      ok[i] = 1;
      for (std::size_t k = 0; k < owners.size(); ++k) {
        const ImageOwnerScore& s = scores[i].owners[k];
        Verdict v = image_verdict(owners[k], s.z, s.log10_p, o);
        v.bit_errors = s.bit_errors;
        v.bits = s.bits;
        v.elements = static_cast<int64_t>(img.width) * img.height;
        v.seconds = scores[i].seconds;
        v.image = Verdict::ImageFacts{1, v.detected ? 1 : 0, img.width, img.height, s.offset_x, s.offset_y, s.sync_z};
        item.verdicts.push_back(std::move(v));
      }
    } catch (const Error& e) {
      if (!folder) throw;
      item.error_code = std::string(errc_name(e.code()));
      item.error_message = e.what();
    }
    if (o.watermark.progress) {
      const std::lock_guard<std::mutex> lock(progress_mu);
      o.watermark.progress(++done, static_cast<int64_t>(files.size()));
    }
  });
  out.bytes = bytes;
  for (const auto& item : out.images)
    if (!item.error_code.empty()) out.warnings.push_back(item.error_message);
  if (!folder) {
    out.verdicts = out.images[0].verdicts;
    return;
  }
  std::vector<const ImageScores*> good;
  for (std::size_t i = 0; i < files.size(); ++i)
    if (ok[i]) good.push_back(&scores[i]);
  for (std::size_t k = 0; k < owners.size(); ++k) {
    const ImageDatasetScore d = combine_image_scores(good, k, claims[k]);
    Verdict v = image_verdict(owners[k], d.z, d.log10_p, o);
    if (d.images == 0) {
      v.status = VerdictStatus::no_eligible_data;
      v.detected = false;
    }
    v.elements = d.images;
    Verdict::ImageFacts f;
    f.images = d.images;
    for (const auto& item : out.images)
      if (k < item.verdicts.size() && item.verdicts[k].detected) ++f.images_detected;
    v.image = f;
    out.verdicts.push_back(std::move(v));
  }
}

}  // namespace didmark::inputs_detail
