// A QuickFIX C++ initiator that logs on to Flowgate with an Ed25519
// signature, then places, amends and cancels one order, printing one line per
// message received ("35=8 150=0 39=0 ..."), and "done" at the end.
//
//   fix_initiator HOST PORT SENDER KEY_ID SEED_BASE64 STORE_DIR DICTIONARY
//
// It validates every message the venue sends against DICTIONARY (the
// venue's QuickFIX data dictionary, docs/FIX44-flowgate.xml).
//
// Built by tests/integration/test_fix_quickfix.py with
// g++ -std=c++14 ... -lquickfix -lsodium -lpthread.

#include <quickfix/Application.h>
#include <quickfix/FileStore.h>
#include <quickfix/Message.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketInitiator.h>
#include <sodium.h>

#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

namespace {

std::string b64decode(const std::string& text) {
  std::string out(text.size(), '\0');
  size_t size = 0;
  sodium_base642bin(reinterpret_cast<unsigned char*>(&out[0]), out.size(), text.c_str(),
                    text.size(), nullptr, &size, nullptr, sodium_base64_VARIANT_ORIGINAL);
  out.resize(size);
  return out;
}

std::string b64encode(const unsigned char* data, size_t size) {
  std::string out(sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(&out[0], out.size(), data, size, sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

class Client : public FIX::Application {
 public:
  Client(std::string key, std::string seed) : key_(std::move(key)) {
    unsigned char public_key[crypto_sign_PUBLICKEYBYTES];
    crypto_sign_seed_keypair(public_key, secret_,
                             reinterpret_cast<const unsigned char*>(seed.data()));
  }

  void onCreate(const FIX::SessionID&) override {}
  void onLogon(const FIX::SessionID& id) override { say("logon", id); }
  void onLogout(const FIX::SessionID& id) override { say("logout", id); }
  void fromAdmin(const FIX::Message& m, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
            FIX::RejectLogon) override {
    print(m);
  }
  void toApp(FIX::Message&, const FIX::SessionID&) throw(FIX::DoNotSend) override {}

  // The Logon is signed once its header is filled in: MsgSeqNum and SendingTime as sent.
  void toAdmin(FIX::Message& message, const FIX::SessionID&) override {
    if (message.getHeader().getField(35) != "A") return;
    const FIX::Header& h = message.getHeader();
    std::string payload = "A\x01" + h.getField(49) + "\x01" + h.getField(56) + "\x01" +
                          h.getField(34) + "\x01" + h.getField(52);
    unsigned char signature[crypto_sign_BYTES];
    crypto_sign_detached(signature, nullptr,
                         reinterpret_cast<const unsigned char*>(payload.data()),
                         payload.size(), secret_);
    std::string text = b64encode(signature, sizeof signature);
    message.setField(553, key_);
    message.setField(95, std::to_string(text.size()));
    message.setField(96, text);
  }

  void fromApp(const FIX::Message& m, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
            FIX::UnsupportedMessageType) override {
    print(m);
    std::lock_guard<std::mutex> lock(mutex_);
    ++received_;
    changed_.notify_all();
  }

  // Wait until `count` application messages have arrived in all.
  bool wait_for(int count) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(10),
                             [&] { return received_ >= count; });
  }

 private:
  void say(const char* what, const FIX::SessionID&) {
    std::lock_guard<std::mutex> lock(out_);
    std::cout << what << std::endl;
  }

  void print(const FIX::Message& m) {
    std::ostringstream line;
    line << "35=" << m.getHeader().getField(35);
    for (int tag : {150, 39, 11, 37, 14, 151, 32, 31, 102, 58}) {
      if (m.isSetField(tag)) line << " " << tag << "=" << m.getField(tag);
    }
    std::lock_guard<std::mutex> lock(out_);
    std::cout << line.str() << std::endl;
  }

  std::string key_;
  unsigned char secret_[crypto_sign_SECRETKEYBYTES];
  std::mutex mutex_, out_;
  std::condition_variable changed_;
  int received_ = 0;
};

FIX::Message order(const char* type) {
  FIX::Message m;
  m.getHeader().setField(35, type);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8 || sodium_init() < 0) {
    std::cerr << "usage: fix_initiator HOST PORT SENDER KEY_ID SEED_BASE64 STORE_DIR "
                 "DICTIONARY\n";
    return 2;
  }
  std::string seed = b64decode(argv[5]);
  std::stringstream config;
  config << "[DEFAULT]\nConnectionType=initiator\nReconnectInterval=1\n"
         << "FileStorePath=" << argv[6] << "\nStartTime=00:00:00\nEndTime=00:00:00\n"
         << "UseDataDictionary=Y\nDataDictionary=" << argv[7]
         << "\nResetOnLogon=Y\nHeartBtInt=30\n"
         << "[SESSION]\nBeginString=FIX.4.4\nSenderCompID=" << argv[3]
         << "\nTargetCompID=FLOWGATE\nSocketConnectHost=" << argv[1]
         << "\nSocketConnectPort=" << argv[2] << "\n";
  FIX::SessionSettings settings(config);
  Client client(argv[4], seed);
  FIX::FileStoreFactory store(settings);
  FIX::SocketInitiator initiator(client, store, settings);
  initiator.start();
  FIX::SessionID id("FIX.4.4", argv[3], "FLOWGATE");
  for (int i = 0; i < 100 && !FIX::Session::lookupSession(id)->isLoggedOn(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  FIX::Message place = order("D");
  place.setField(11, "qf-1");
  place.setField(55, "BTC-USDT");
  place.setField(54, "1");
  place.setField(38, "0.01");
  place.setField(40, "2");
  place.setField(44, "49000");
  place.setField(59, "1");
  place.setField(60, "20261124-00:00:00.000");
  FIX::Session::sendToTarget(place, id);
  client.wait_for(1);

  FIX::Message amend = order("G");
  amend.setField(41, "qf-1");
  amend.setField(11, "qf-2");
  amend.setField(55, "BTC-USDT");
  amend.setField(54, "1");
  amend.setField(38, "0.005");
  amend.setField(40, "2");
  amend.setField(44, "49000");
  amend.setField(60, "20261124-00:00:00.000");
  FIX::Session::sendToTarget(amend, id);
  client.wait_for(2);

  FIX::Message cancel = order("F");
  cancel.setField(41, "qf-1");
  cancel.setField(11, "qf-3");
  cancel.setField(55, "BTC-USDT");
  cancel.setField(54, "1");
  cancel.setField(60, "20261124-00:00:00.000");
  FIX::Session::sendToTarget(cancel, id);
  bool all = client.wait_for(3);

  initiator.stop();
  std::cout << (all ? "done" : "incomplete") << std::endl;
  return all ? 0 : 1;
}
